#!/usr/bin/env bash
# `make bench-gateway`: the gateway drills on the `platform` scenario (make demo's hosts), under
# the Molecule lock from converge to destroy: bench/gateway_drills.py (kill -9 and restart with
# one user), bench/gateway_soak.py restart (30 users' load) and soak (10 minutes, 30 users).
# JSON to stdout and bench/results/. BENCH_GATEWAY="restart" runs a subset; KEEP=1 leaves the
# scenario up afterwards (make demo-down removes it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$here/.cache/collections"
export DP_WHEELHOUSE="${DP_WHEELHOUSE:-$here/.cache/wheelhouse}"
scripts/build-images.sh
mkdir -p bench/results .cache/platform
stamp=$(date +%Y%m%dT%H%M)
export stamp runs="${BENCH_GATEWAY:-drills restart soak}" keep="${KEEP:-0}"
flock /tmp/dataplatform-molecule.lock bash -c '
  if ! docker inspect platform-gateway >/dev/null 2>&1; then
    molecule destroy -s platform >/dev/null 2>&1 || true
  fi
  molecule converge -s platform >.cache/platform/bench-converge.log 2>&1 || {
    tail -40 .cache/platform/bench-converge.log; exit 1; }
  rc=0
  for run in $runs; do
    case $run in
      drills) python -m bench.gateway_drills | tee "bench/results/gateway-drills-$stamp.json" || rc=1 ;;
      restart|soak) python -m bench.gateway_soak "$run" | tee "bench/results/gateway-$run-$stamp.json" || rc=1 ;;
    esac
  done
  [ "$keep" = 1 ] || molecule destroy -s platform >/dev/null 2>&1 || true
  exit $rc'
echo "saved bench/results/gateway-*-$stamp.json"
