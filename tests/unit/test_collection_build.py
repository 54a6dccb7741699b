"""The built collection carries the product only, and installs offline from its tarball."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEV_ONLY = (
    "tests/",
    "molecule/",
    "bench/",
    "scripts/",
    ".ci/",
    ".config/",
    "requirements/",
    "Makefile",
    ".venv/",
    "src/",  # the platform package ships as its wheel, not as source
    "build/",
    "pyproject.toml",
)
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
WHEEL = f"roles/_dask_env/files/dataplatform_dask-{VERSION}-py3-none-any.whl"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build")
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", "--output-path", out, ROOT],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("dataplatform-dask-*.tar.gz")
    return built


def test_tarball_has_no_dev_tooling(tarball: Path) -> None:
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    leaked = [n for n in names if n.startswith(DEV_ONLY)]
    assert leaked == []
    for wanted in ("roles/dask_scheduler/tasks/main.yml", "roles/_dask_env/files/dask-env.lock", "meta/runtime.yml"):
        assert wanted in names
    assert [n for n in names if n.endswith(".whl")] == [WHEEL], "the package's wheel: `make wheel` builds it"


def test_tarball_installs_offline_and_its_roles_resolve(tarball: Path, tmp_path: Path) -> None:
    dest = tmp_path / "collections"
    # Only the fresh path and the ansible bundle (which holds the dependencies) are searched.
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(dest)}
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--offline", "-p", dest, tarball],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    installed = dest / "ansible_collections" / "dataplatform" / "dask"
    assert (installed / "MANIFEST.json").is_file()
    doc = subprocess.run(
        [BIN / "ansible-doc", "-t", "role", "dataplatform.dask.dask_worker"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    assert "dask_worker_memory_limit" in doc.stdout
    assert str(installed) in doc.stdout or "dataplatform.dask.dask_worker" in doc.stdout
