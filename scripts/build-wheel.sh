#!/usr/bin/env bash
# Build the platform's own package (src/dataplatform_dask) into roles/_dask_env/files/, where
# _dask_env ships it to every host (the Dask lock pins it) and `make build` packs it into the
# collection. Always rebuilt: it takes seconds and the version does not change with every edit.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${DP_VENV:-$here/.venv}"
out="$here/roles/_dask_env/files"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/pyproject.toml" | head -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$here/build" "$here"/src/*.egg-info' EXIT
"$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$tmp" "$here" >/dev/null
whl="dataplatform_dask-$version-py3-none-any.whl"
[ -f "$tmp/$whl" ] || { echo "build-wheel: pip built no $whl" >&2; exit 1; }
rm -f "$out"/dataplatform_dask-*.whl
mv "$tmp/$whl" "$out/$whl"
echo "==> wheel: $out/$whl"
