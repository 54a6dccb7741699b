#!/usr/bin/env bash
# yamllint, ansible-lint (profile production, from .ansible-lint) and ruff.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin="${DP_VENV:-$here/.venv}/bin"
echo "==> yamllint";     "$bin/yamllint" --strict .
echo "==> ruff";         "$bin/ruff" check .
echo "==> ruff format";  "$bin/ruff" format --check .
echo "==> ansible-lint"; "$bin/ansible-lint" --offline
