"""Every test sees the checkout as ansible_collections.dataplatform.dask.

pyproject.toml's [tool.pytest.ini_options] pythonpath puts .cache/collections (and the checkout,
for tests.peers) on sys.path; `make collection` links the checkout there, and this makes the link
too when pytest runs on its own.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".cache" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "dataplatform" / "dask"

if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(ROOT, LINK)
    importlib.invalidate_caches()  # .cache/collections may have been looked at before it existed
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLLECTIONS))
