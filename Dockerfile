# classify-gateway container image.
#
#   docker build -t classify-gateway:0.1.0 .
#
# Two stages. The builder installs exactly what uv.lock pins for the runtime
# dependencies of pyproject.toml ([project].dependencies: no dev group, no extras, so
# neither the emulator's starlette/uvicorn nor pytest/grpcio-tools) plus the project
# itself as a built wheel (non-editable), into /app/.venv. The runtime stage copies
# only that virtual environment: no source tree, no uv, no build tools.
# docs/deploy.md explains the image and the manifests in deploy/.
#
# The base is pinned by tag and digest (the multi-arch index of Docker Hub's
# python:3.13.9-slim-trixie, Debian 13); a rebuilt tag cannot change the image under
# us. To update: `docker buildx imagetools inspect python:3.13-slim-trixie`, take the
# new version and index digest, and change this line (tests/deploy checks the form).
# Both stages must use the same base, because the virtual environment's interpreter
# is a symlink to /usr/local/bin/python3.13. pyproject.toml's requires-python
# (>=3.11,<3.14) and uv.lock cover 3.13.
ARG PYTHON_IMAGE=python:3.13.9-slim-trixie@sha256:326df678c20c78d465db501563f3492d17c42a4afe33a1f2bf5406a1d56b0e86

# ---------------------------------------------------------------------------
# Stage 1: build /app/.venv from uv.lock
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# The same uv as the Makefile's UV_VERSION (tests/deploy checks they agree).
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# Use the image's interpreter (never download one), copy files out of uv's cache
# instead of hard-linking, compile bytecode now (the root filesystem is read-only at
# run time), and put the environment where the runtime stage expects it.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.13 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
# --frozen: install what uv.lock says, fail instead of re-resolving.
# --no-dev: without the dev dependency group. No --extra/--all-extras: no emulator.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-editable --no-install-project

# Then the project: built as a wheel by its build backend and installed into the
# environment (--no-editable), so /app/.venv is self-contained. The generated
# protobuf code is installed as the package `classify_gateway_proto`. The classify_emulator/ directory is
# deliberately not copied: the image ships the gateway only.
COPY README.md ./
COPY classify_gateway/ ./classify_gateway/
COPY generated/ ./generated/
RUN uv sync --frozen --no-dev --no-editable

# ---------------------------------------------------------------------------
# Stage 2: runtime
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed non-root uid/gid, matched by runAsUser/fsGroup in deploy/k8s/deployment.yaml.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin gateway

COPY --from=builder /app/.venv /app/.venv

# Listen on all interfaces inside the container (the code defaults are the same
# ports; these make the container's intent explicit and are overridable).
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLASSIFY_GATEWAY_LISTEN=0.0.0.0:50051 \
    CLASSIFY_GATEWAY_METRICS_LISTEN=0.0.0.0:9464

WORKDIR /app

# 50051: gRPC (ClassifyService, grpc.health.v1, reflection); 9464: Prometheus /metrics.
EXPOSE 50051 9464

USER 10001

# SIGTERM starts the drain: health NOT_SERVING, no new calls, open streams get up to
# CLASSIFY_GATEWAY_DRAIN_GRACE (25 s) to finish, then exit 0.
STOPSIGNAL SIGTERM

# No HEALTHCHECK: Kubernetes ignores it and checks the pod with native gRPC probes
# against grpc.health.v1 (deploy/k8s/deployment.yaml); a HEALTHCHECK would start a Python
# interpreter at every interval. grpcio and grpcio-health-checking are installed, so a
# plain `docker run` can check with `docker exec` (the command is in docs/deploy.md).
ENTRYPOINT ["classify-gateway"]
CMD ["serve"]
