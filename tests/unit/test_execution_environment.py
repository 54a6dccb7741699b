"""execution-environment.yml is a valid ansible-builder 3 definition pinned like requirements/dev.txt."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EE = ROOT / "execution-environment.yml"


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if match:
            found[match.group(1).split("[")[0].lower()] = match.group(2)
    return found


def test_python_and_core_versions_follow_requirements():
    ee = yaml.safe_load(EE.read_text())
    wanted = pins()
    deps = ee["dependencies"]
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={wanted['ansible-core']}"
    for spec in deps["python"]:
        name, _sep, version = spec.partition("==")
        if version:
            assert wanted[name.lower()] == version, f"{name}: EE {version}, requirements/dev.txt {wanted[name.lower()]}"


def test_collections_match_the_tested_ones():
    ee = yaml.safe_load(EE.read_text())
    site = Path(yaml.__file__).resolve().parents[1] / "ansible_collections"
    for entry in ee["dependencies"]["galaxy"]["collections"]:
        namespace, name = entry["name"].split(".")
        manifest = (site / namespace / name / "MANIFEST.json").read_text()
        tested = re.search(r'"version": "([^"]+)"', manifest).group(1)
        assert entry["version"] == f"=={tested}", entry["name"]


def test_ansible_builder_accepts_the_definition(tmp_path):
    shutil.copy(EE, tmp_path / EE.name)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "dataplatform-dask-0.1.0.tar.gz").write_bytes(b"")
    builder = Path(sys.executable).parent / "ansible-builder"
    proc = subprocess.run(
        [str(builder), "create", "-f", EE.name, "-c", "context", "--output-filename", "Containerfile"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert "quay.io/centos/centos:stream9" in containerfile
    assert "dataplatform-dask-*.tar.gz" in containerfile
    requirements = (tmp_path / "context" / "_build" / "requirements.txt").read_text()
    assert "boto3==1.44.5" in requirements
