"""The platform package (src/dataplatform_dask) and the roles that ship it: one version everywhere,
and the roles install the package rather than reaching for files beside them in the checkout."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
LOCK = ROLES / "_dask_env" / "files" / "dask-env.lock"
# A role reaching out of itself into the checkout: "{{ role_path }}/../..." or "role_path ~ '/../...'".
ROLE_PATH_UP = re.compile(r"""role_path\s*(?:\}\}|~\s*['"])\s*/\.\.""")


def role_lines() -> list[tuple[str, str]]:
    """(file:line, text) for every line of the roles' tasks, vars, defaults, meta and templates."""
    sources = sorted(p for pattern in ("*.yml", "*.yaml", "*.j2") for p in ROLES.rglob(pattern) if p.is_file())
    return [
        (f"{p.relative_to(ROOT)}:{n}", text) for p in sources for n, text in enumerate(p.read_text().splitlines(), 1)
    ]


def test_one_version_for_the_package_the_collection_and_the_lock():
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    collection = str(yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"])
    pins = re.findall(r"^dataplatform-dask==(\S+)", LOCK.read_text(), flags=re.MULTILINE)
    assert pins == [package], f"{LOCK.relative_to(ROOT)} pins dataplatform-dask {pins}, pyproject.toml has {package}"
    assert collection == package


def test_the_roles_find_nothing_outside_themselves():
    lines = role_lines()
    assert lines, "no role files found"
    assert [where for where, text in lines if ROLE_PATH_UP.search(text)] == [], "a role reaches above its role_path"
    plugins = [where for where, text in lines if "/plugins/" in text]
    assert plugins == [], "a role reaches into the collection's plugins/ (the package ships module_utils)"


def test_the_roles_ship_no_loose_python():
    loose = sorted(str(p.relative_to(ROOT)) for p in ROLES.glob("*/files/**/*.py"))
    assert loose == [], "Python the hosts run lives in src/dataplatform_dask and ships as its wheel"
