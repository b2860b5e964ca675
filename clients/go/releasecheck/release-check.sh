#!/usr/bin/env bash
# What a team that depends on the Go client goes through, offline, from a clean module cache:
#   1. the client module at RELEASE_REV is zipped the way a module proxy zips the tag
#      clients/go/$RELEASE_VERSION, into a file-system proxy ($tmp/proxy);
#   2. a fresh consumer module (testdata/consumer) with a clean GOPATH and GOMODCACHE runs
#      `go get <module>@$RELEASE_VERSION`, `go mod tidy`, `go build`, `go vet`, and runs the
#      program (embedded service config present, a call to a closed port ends UNAVAILABLE);
#   3. `go install <module>/cmd/classify@$RELEASE_VERSION` builds the example command.
# GOPROXY is the local proxy, then the versions of the client's module graph from its module
# cache (already verified against go.sum when it was filled), then `off`: nothing reaches
# the network. GOPRIVATE and GONOPROXY=none are what a company sets for a private module
# behind its own proxy; GOSUMDB is off (no network), and the public dependencies are
# checked against the client's go.sum (plus the hashes of the rest of its module graph),
# copied into the consumer before anything is fetched.
# Run by `make -C clients/go release-check` (which sets GOTOOLCHAIN, GOFLAGS, and under
# SELF_CONTAINED=1 GOMODCACHE and GOCACHE).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
client=$(dirname "$here")
repo=$(git -C "$client" rev-parse --show-toplevel)
subdir=$(realpath --relative-to="$repo" "$client")
version=${RELEASE_VERSION:-v0.1.0}
go=${GO:-go}
: "${GOTOOLCHAIN:?run through make -C clients/go release-check}"
# The client's module cache: the machine's (go env) unless the Makefile or the caller set one.
GOMODCACHE=${GOMODCACHE:-$("$go" env GOMODCACHE)}
export GOMODCACHE

# The revision to zip: HEAD, or HEAD plus the uncommitted changes to tracked files (a
# stash commit; the work tree is not touched). Untracked files are not in a release.
rev=${RELEASE_REV:-}
if [ -z "$rev" ]; then
  rev=$(git -C "$repo" stash create 2>/dev/null || true)
  rev=${rev:-HEAD}
fi
if [ -n "$(git -C "$repo" ls-files --others --exclude-standard -- "$subdir")" ]; then
  echo "release-check: untracked files under $subdir are not part of the check (git add them):" >&2
  git -C "$repo" ls-files --others --exclude-standard -- "$subdir" | sed 's/^/  /' >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/go-release-check.XXXXXX")
cleanup() { chmod -R u+w "$tmp" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# Every module in the client's module graph (go mod tidy in the consumer reads them all),
# in the client's cache: from the usual GOPROXY the first time, checked by the sumdb as
# usual, then from the cache. -modfile keeps the hashes this adds out of the client's go.sum
# (which is complete for the client itself and never rewritten); they seed the consumer's.
cp "$client/go.mod" "$tmp/client.mod"
cp "$client/go.sum" "$tmp/client.sum"
(cd "$client" && "$go" mod download -modfile="$tmp/client.mod" all)

# The consumer's proxy for public modules: exactly the module versions those hashes cover,
# linked from the module cache (which, shared by the machine, holds much more): a go.mod
# for a `/go.mod` line, the module itself for the others. So the consumer can reach no
# module the client's graph does not name, whatever else the cache holds.
# Paths and versions as the cache spells them: an upper-case letter is `!` and the letter in
# lower case (POSIX awk, not GNU sed's \L, so that this runs on macOS too).
escape='function esc(s,  o, i, c) { o = ""; for (i = 1; i <= length(s); i++) { c = substr(s, i, 1); o = o (c ~ /[A-Z]/ ? "!" tolower(c) : c) } return o }
{ print esc($1), esc($2) }'
while read -r esc ver; do
  files=(info mod)
  case "$ver" in */go.mod) ver=${ver%/go.mod} ;; *) files+=(zip) ;; esac
  mkdir -p "$tmp/deps/$esc/@v"
  for ext in "${files[@]}"; do
    src="$GOMODCACHE/cache/download/$esc/@v/$ver.$ext"
    if [ -e "$src" ]; then ln -sf "$src" "$tmp/deps/$esc/@v/$ver.$ext"; fi
  done
done < <(awk "$escape" "$tmp/client.sum")

module=$(cd "$here" && "$go" run . -repo "$repo" -rev "$rev" -subdir "$subdir" -version "$version" -out "$tmp/proxy")

mkdir -p "$tmp/consumer"
sed "s|CLIENT_MODULE|$module|g" "$here/testdata/consumer/main.go" >"$tmp/consumer/main.go"
goline=$(awk '$1 == "go" { print $2; exit }' "$client/go.mod")
printf 'module example.com/consumer\n\ngo %s\n' "$goline" >"$tmp/consumer/go.mod"
cp "$tmp/client.sum" "$tmp/consumer/go.sum"

consumer_env=(
  env
  GOENV=off # no settings from the user's go env file: only what is set here
  GOPATH="$tmp/gopath"
  GOMODCACHE="$tmp/gopath/pkg/mod"
  GOBIN="$tmp/bin"
  GOPROXY="file://$tmp/proxy,file://$tmp/deps,off"
  GOPRIVATE="$module"
  GONOPROXY=none
  GOSUMDB=off
  GOFLAGS="-mod=mod -buildvcs=false -trimpath" # -trimpath: the build cache is reused although $tmp differs
  GOTOOLCHAIN=local
  GOWORK=off
)
cd "$tmp/consumer"
"${consumer_env[@]}" "$go" get "$module@$version"
"${consumer_env[@]}" "$go" mod tidy
grep -q "^	$module $version\$\|^require $module $version\$" go.mod ||
  { echo "release-check: go.mod of the consumer does not require $module $version:" >&2; cat go.mod >&2; exit 1; }
"${consumer_env[@]}" "$go" vet .
"${consumer_env[@]}" "$go" build -o consumer .
./consumer
"${consumer_env[@]}" "$go" install "$module/cmd/classify@$version"
usage=$("$tmp/bin/classify" -h 2>&1 || true)
grep -q -- -addr <<<"$usage" ||
  { echo "release-check: the installed classify command does not print its usage: $usage" >&2; exit 1; }
echo "release-check (Go): $module@$version from ${rev:0:12} builds and runs for a consumer, offline, from a clean module cache"
