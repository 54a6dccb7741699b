#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install requirements/dev.txt and the platform package
# (src/dataplatform_dask, editable) into it.
# Skips everything when the venv already matches the requirements file.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${DP_VENV:-$here/.venv}"
req="$here/requirements/dev.txt"
stamp="$venv/.dp-requirements.sha256"

find_python() {
  # pyenv's interpreters are called directly: the shim can fail on these machines.
  local c
  for c in "${DP_PYTHON:-}" \
           "$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12* 2>/dev/null | sort -V | tail -1)/bin/python" \
           "$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13* 2>/dev/null | sort -V | tail -1)/bin/python" \
           python3.13 python3.12 python3; do
    [ -n "$c" ] || continue
    command -v "$c" >/dev/null 2>&1 || [ -x "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

want=$(cat "$req" "$here/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
py=$(find_python) || { echo "No Python >= 3.12 found: install one or set DP_PYTHON=/path/to/python3.12" >&2; exit 1; }
echo "==> creating $venv with $py"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$req"
# The platform's own package, editable: tests and bench import it like any installed package.
"$venv/bin/python" -m pip install --quiet --no-deps -e "$here"
rm -rf "$here"/src/*.egg-info "$here/build"
echo "$want" >"$stamp"
echo "==> $venv ready"
