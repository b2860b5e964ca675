# classify-gateway: every entry point a person or CI needs.
#   make demo   start the emulator and the gateway, stream a classification, stop
#   make test   build .venv from uv.lock, lint, and run every test (Python, Go, Java)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
BUF := $(VENV)/bin/buf
export UV_PYTHON_DOWNLOADS := never
# Python writes its bytecode caches (__pycache__, ignored by git) in every recipe, even on a
# machine whose environment sets PYTHONDONTWRITEBYTECODE (this one's and CI's do): the tests
# start over a hundred Python processes (gateways, emulators, workers, check-config), and
# without the caches each compiles every module it imports, its dependencies' too, from
# source (docs/benchmarks.md, "make test").
unexport PYTHONDONTWRITEBYTECODE
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
PYTEST_ARGS ?=
# Most tests wait on sockets and child processes, so three workers keep two cores busy.
PYTEST_WORKERS ?= 3
# The official SDK 1.3.6 tests: their own locked environment (tests/sdk13/pyproject.toml).
SDK13 := tests/sdk13
SDK13_VENV := $(SDK13)/.venv
# import-linter: its own locked environment (tools/lint-imports/pyproject.toml says why).
LINT_IMPORTS := tools/lint-imports
LINT_IMPORTS_VENV := $(LINT_IMPORTS)/.venv

.PHONY: help venv redis-server promtool generate lint fmt test test-python test-python-shared test-python-alone test-collect clients-build test-sdk13 test-go test-java test-go-v13 test-java-v13 test-clients-go test-clients-java release-check demo bench soak clean

help:
	@echo "make demo      start emulator + gateway, stream a classification, stop"
	@echo "make test      lint + every test (Python, Go, Java); builds .venv from uv.lock"
	@echo "make release-check  the Go and Java clients, as a calling team gets them, build offline (docs/clients.md)"
	@echo "make test-go-v13, test-java-v13  the Go, Java integration suites against a v1.3 gateway (test-go, test-java: everything, v1.2)"
	@echo "make test-sdk13  the official SDK 1.3.6 against the emulator's /v1.3 (own venv)"
	@echo "make generate  regenerate generated/ from proto/, refresh the clients' copies"
	@echo "make lint      ruff, mypy (strict on classify_gateway/), lint-imports (layers), buf lint/format/breaking"
	@echo "make bench     benchmarks, about 15 minutes (BENCH_QUICK=1: about 4)"
	@echo "make soak      long steady load with faults (SOAK_SECONDS, default 600)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The virtual environment is built from the lock file only (--frozen): no resolution
# happens on CI, so every run installs exactly the pinned versions.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@

venv: $(VENV)/.synced

# twelvelabs 1.3.6 cannot share .venv with the 0.3.2 pinned there (same package name).
$(SDK13_VENV)/.synced: $(SDK13)/uv.lock $(SDK13)/pyproject.toml | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(SDK13_VENV) $(UV) sync --frozen --project $(SDK13)
	@touch $@

$(LINT_IMPORTS_VENV)/.synced: $(LINT_IMPORTS)/uv.lock $(LINT_IMPORTS)/pyproject.toml | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(LINT_IMPORTS_VENV) $(UV) sync --frozen --project $(LINT_IMPORTS)
	@touch $@

# The tests start real redis-server processes on free loopback ports
# (tests/support/redis_server.py; Sentinel with `redis-server --sentinel`, TLS, and a
# Cluster joined by redis-cli: tests/support/redis_ha.py). When either binary is missing:
# Debian's packages as root (CI), otherwise a message (README.md, "Redis for the tests",
# says how on a laptop).
redis-server:
	@if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server and redis-tools (Debian packages) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools; \
	  else \
	    echo "redis-server or redis-cli is not installed: see README.md, 'Redis for the tests'" >&2; exit 1; \
	  fi; \
	fi

# tests/deploy/test_alerts.py checks which alerts fire, and that every rule and dashboard
# query parses, with promtool (Debian's prometheus package; it starts no service). As root
# (CI) it is installed when missing; elsewhere those tests skip, with a note here.
promtool:
	@if ! command -v promtool >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool (Debian package prometheus) for the alert tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	  else \
	    echo "note: promtool is not installed; the promtool alert tests will skip (README.md, 'Redis for the tests')" >&2; \
	  fi; \
	fi

# Python stubs, plus the copies each client module keeps so that it builds outside this
# repository (tests/contract/test_client_copies.py fails when one is stale). The Go stubs
# need Go: `make -C clients/go generate`.
generate: venv
	$(PY) tools/generate.py
	$(MAKE) -C clients/java generate
	cp deploy/service-config.json clients/go/classify/service-config.json

fmt: venv
	$(VENV)/bin/ruff format classify_gateway classify_emulator tests tools bench
	$(VENV)/bin/ruff check --fix classify_gateway classify_emulator tests tools bench
	$(BUF) format -w

# lint-imports runs from the root: it reads [tool.importlinter] in pyproject.toml and finds
# classify_gateway on sys.path (it puts the working directory there); grimp parses the
# source and imports none of it, so its environment needs nothing of the gateway's.
lint: venv $(LINT_IMPORTS_VENV)/.synced
	$(VENV)/bin/ruff check classify_gateway classify_emulator tests tools bench
	$(VENV)/bin/ruff format --check classify_gateway classify_emulator tests tools bench
	$(VENV)/bin/mypy
	$(LINT_IMPORTS_VENV)/bin/lint-imports
	$(BUF) lint
	$(BUF) format -d --exit-code
	bash tools/buf-breaking.sh $(BUF)

# The suite in two parts: everything but the `alone` tests spread over PYTEST_WORKERS
# processes (pytest-xdist, a module per worker at a time: module fixtures stay whole),
# then the `alone` tests, which time what they measure under load, with nothing else
# running. PYTEST_WORKERS=0 runs the first part in this process (for a debugger). A part
# that PYTEST_ARGS leaves empty (pytest's exit code 5) is not a failure.
test-python: test-python-shared
	$(MAKE) test-python-alone

test-python-shared: venv redis-server promtool
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not alone" $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-python-alone: venv redis-server promtool
	$(PY) -m pytest -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

# pytest's collection once, alone, before the workers collect: on a clean clone it
# compiles every test module (with pytest's assertion rewriting) and the modules they
# import into __pycache__, work each xdist worker otherwise does for itself at the same
# time. `make test` runs it beside lint, which leaves a core free.
test-collect: venv
	@out=$$($(PY) -m pytest --collect-only -q $(PYTEST_ARGS) 2>&1) && echo "$${out##*$$'\n'}" || \
	  { rc=$$?; [ $$rc -eq 5 ] || { echo "$$out" | tail -40; exit $$rc; }; }

# The SDK's tests start the emulator with the main environment's python.
test-sdk13: venv $(SDK13_VENV)/.synced
	CLASSIFY_EMULATOR_PYTHON=$(CURDIR)/$(PY) $(SDK13_VENV)/bin/python -m pytest \
	  -c $(SDK13)/pyproject.toml --rootdir $(SDK13) $(SDK13) $(PYTEST_ARGS)

test-go: venv
	$(PY) -m tools.stack -- $(MAKE) -C clients/go test

test-java: venv
	$(PY) -m tools.stack -- $(MAKE) -C clients/java test

# The two integration suites against a gateway with the v1.3 backend (README.md, "Two
# backends"): tools/stack.py exports CLASSIFY_GATEWAY_UPSTREAM_API=v1.3 and the tests check
# v1.3's upstream calls and scoring where they differ. Only the integration tests: what else
# test-go and test-java check (generated code, vet, unit tests, the jar) does not depend on
# the gateway's backend.
test-go-v13: venv
	$(PY) -m tools.stack --upstream-api v1.3 -- $(MAKE) -C clients/go integration

test-java-v13: venv
	$(PY) -m tools.stack --upstream-api v1.3 -- $(MAKE) -C clients/java integration

# What a calling team outside this repository goes through, offline: the Go module from a
# file-system module proxy into a clean module cache, the Java artifact deployed through
# distributionManagement to a file:// repository and built against from an empty local
# repository (docs/clients.md, "What make release-check proves"). No stack needed; about
# 30 s of CPU once the caches are filled.
release-check:
	$(MAKE) -C clients/go release-check
	$(MAKE) -C clients/java release-check

# The client suites in two lanes side by side, each in its own order: Go (v1.2, v1.3,
# release-check) and Java (the same). Each lane starts stacks of its own on free ports;
# their output is printed a lane at a time. Go and Maven use the machine's caches (Go's
# GOMODCACHE and GOCACHE, ~/.m2/repository), as uv does: docs/clients.md, "Where the
# clients' builds keep their caches". SELF_CONTAINED=1 (e.g. `make test SELF_CONTAINED=1`)
# keeps them in git-ignored folders of the clone instead.
test-clients-go:
	$(MAKE) -j1 test-go
	$(MAKE) -j1 test-go-v13
	$(MAKE) -j1 -C clients/go release-check

test-clients-java:
	$(MAKE) -j1 test-java
	$(MAKE) -j1 test-java-v13
	$(MAKE) -j1 -C clients/java release-check

# The Go and Java clients compiled with their dependencies and test code, nothing run. On
# a machine whose Go and Maven caches are empty this is most of what their lanes cost (it
# compiles grpc-go and protobuf): `make test` does it before the lanes run beside the
# Python suite, which it would otherwise slow down (after the first run: seconds).
clients-build:
	$(MAKE) -C clients/go build
	$(MAKE) -C clients/java build

# In three steps, each keeping both cores busy: lint beside pytest's collection and the
# clients' compilation; the Python suite over its workers, beside the SDK suite and the
# Go and Java lanes (mostly waiting on their stacks, they fill the cores the workers
# leave idle); then the `alone` tests with nothing else running (docs/benchmarks.md,
# "make test", has the timings).
test: redis-server promtool venv
	$(MAKE) -j3 --output-sync=target lint test-collect clients-build
	$(MAKE) -j4 --output-sync=target test-python-shared test-sdk13 test-clients-go test-clients-java
	$(MAKE) test-python-alone

demo: venv
	$(VENV)/bin/classify-gateway demo

bench: venv
	$(PY) -m bench $(if $(BENCH_QUICK),--quick,)

soak: venv
	$(PY) -m tests.reliability.soak --seconds $(or $(SOAK_SECONDS),600)

clean:
	rm -rf $(VENV) $(SDK13_VENV) $(LINT_IMPORTS_VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
