#!/usr/bin/env bash
# ansible-test sanity from a temporary ansible_collections/dataplatform/dask copy
# (ansible-test needs that layout), on the venv's Python.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${DP_VENV:-$here/.venv}/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest="$tmp/ansible_collections/dataplatform/dask"
mkdir -p "$dest"
rsync -a --exclude .git --exclude .venv --exclude .cache --exclude '__pycache__' \
  --exclude .pytest_cache --exclude .ruff_cache "$here/" "$dest/"
# The collections we depend on come from the ansible bundle in the venv; ansible-test finds
# them beside ours in the same ansible_collections tree.
bundle=$("$bin/python" -c 'import ansible_collections, os; print(os.path.dirname(ansible_collections.__file__))' 2>/dev/null \
  || "$bin/python" -c 'import ansible_collections; print(list(ansible_collections.__path__)[0])')
for ns in amazon community ansible; do
  [ -d "$bundle/$ns" ] && ln -s "$bundle/$ns" "$tmp/ansible_collections/$ns"
done
cd "$dest"
# ansible-test fetches its pip bootstrap script from a host these machines cannot reach.
pipver=$("$bin/python" - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)
getpip="$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
[ -f "$getpip" ] || { mkdir -p "$(dirname "$getpip")"; cp "$here/scripts/offline-get-pip.py" "$getpip"; }
pyver=$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# Tests that need a container runtime or network of their own are left to the other phases.
"$bin/ansible-test" sanity --python "$pyver" --color no \
  --venv --requirements ${DP_SANITY_ARGS:-} 2>&1 | grep -v '^WARNING: Reviewing previous' || exit "${PIPESTATUS[0]}"
