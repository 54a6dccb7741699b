#!/usr/bin/env bash
# `make bench`: converge the cluster scenario, run bench/cluster_bench.py and bench/drills.py
# (JSON to stdout and bench/results/), tear the scenario down. Other benchmarks in bench/ say how to run them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$here/.cache/collections"
export DP_WHEELHOUSE="${DP_WHEELHOUSE:-$here/.cache/wheelhouse}"
scripts/build-images.sh
mkdir -p bench/results
stamp=$(date +%Y%m%dT%H%M%S)
out="bench/results/cluster-$stamp.json"
drills="bench/results/drills-$stamp.json"
flock /tmp/dataplatform-molecule.lock bash -c "
  molecule destroy -s cluster >/dev/null 2>&1 || true
  molecule converge -s cluster >/dev/null
  python bench/cluster_bench.py | tee '$out'
  rc=\$?
  python bench/drills.py | tee '$drills' || rc=1
  molecule destroy -s cluster >/dev/null 2>&1 || true
  exit \$rc"
echo "saved $out $drills"
