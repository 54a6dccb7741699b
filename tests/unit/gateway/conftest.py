"""The gateway package ships in roles/dask_gateway/files; tests import it from there."""

from __future__ import annotations

import sys
from pathlib import Path

FILES = Path(__file__).resolve().parents[3] / "roles" / "dask_gateway" / "files"
if str(FILES) not in sys.path:
    sys.path.insert(0, str(FILES))
