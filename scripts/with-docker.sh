#!/usr/bin/env bash
# Run a command with a Docker daemon available. Starts dockerd only if none
# answers, and stops it again on exit when this script was the one to start it and no
# container is left running (another terminal's scenario or a `make demo` may still use it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
started=0
if ! docker info >/dev/null 2>&1; then
  DP_STATE_DIR="${DP_STATE_DIR:-$here/../.cache}" "$here/dockerd.sh" start
  started=1
fi
cleanup() {
  if [ "$started" = 1 ] && [ -z "$(docker ps -q 2>/dev/null)" ]; then
    "$here/dockerd.sh" stop || true
  fi
}
trap cleanup EXIT
"$@"
