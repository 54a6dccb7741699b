#!/usr/bin/env bash
# Download the Dask environment's wheels once, for every Python the test hosts run
# (Debian 12: 3.11, Debian 13: 3.13), into .cache/wheelhouse. The containers
# install from it with --no-index --find-links: nothing is fetched per container,
# and an air-gapped site uses the same path with its own wheelhouse.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${DP_VENV:-$here/.venv}"
lock="$here/roles/_dask_env/files/dask-env.lock"
out="${DP_WHEELHOUSE:-$here/.cache/wheelhouse}"
stamp="$out/.lock.sha256"
pythons="${DP_WHEEL_PYTHONS:-3.11 3.13}"
# The platform's own package is not downloaded: _dask_env ships its wheel (make wheel).
reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
grep -v '^dataplatform-dask==' "$lock" >"$reqs"
want="$(sha256sum <"$reqs" | cut -d' ' -f1) $pythons"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
mkdir -p "$out"
plat=()
for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 linux_x86_64; do
  plat+=(--platform "$p")
done
for v in $pythons; do
  echo "==> wheelhouse: Python $v"
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check \
    --only-binary=:all: --python-version "$v" --implementation cp "${plat[@]}" \
    -r "$reqs" -d "$out"
done
echo "$want" >"$stamp"
echo "==> wheelhouse ready: $(ls "$out"/*.whl | wc -l) wheels in $out"
