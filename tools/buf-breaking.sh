#!/usr/bin/env bash
# buf breaking (FILE rules) against the previous commit of main, once it has a proto.
# Working-tree changes are compared with HEAD; a clean tree with HEAD~1.
set -euo pipefail
buf=${1:-buf}
cd "$(git rev-parse --show-toplevel)"
if ! git diff --quiet HEAD -- proto 2>/dev/null; then
  ref=HEAD
else
  ref=HEAD~1
fi
if ! git cat-file -e "$ref:proto" 2>/dev/null; then
  echo "buf breaking: $ref has no proto/ yet (first contract commit or shallow clone): nothing to compare"
  exit 0
fi
"$buf" breaking --against ".git#ref=$ref,subdir=proto" proto
echo "buf breaking: proto/ is compatible with $ref"
