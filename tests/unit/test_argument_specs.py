"""Every role's meta/argument_specs.yml documents exactly the variables its defaults/main.yml sets.

The prometheus.prometheus collection checks the same with lint_arguments_spec.sh: an
undocumented default or a documented option with no default both fail here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir() and not p.name.startswith("_"))


def _load(path: Path) -> dict:
    with path.open() as f:
        return yaml.safe_load(f) or {}


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_argument_specs_match_defaults(role: Path) -> None:
    spec_file = role / "meta" / "argument_specs.yml"
    assert spec_file.is_file(), f"{role.name}: meta/argument_specs.yml is missing"
    defaults_file = role / "defaults" / "main.yml"
    defaults = _load(defaults_file) if defaults_file.is_file() else {}
    specs = _load(spec_file)["argument_specs"]
    options = specs["main"].get("options", {})
    missing_in_spec = sorted(set(defaults) - set(options))
    missing_default = sorted(k for k, v in options.items() if k not in defaults and not v.get("required", False))
    assert not missing_in_spec, f"{role.name}: defaults without an argument_specs entry: {missing_in_spec}"
    assert not missing_default, f"{role.name}: options with no default: {missing_default}"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_argument_specs_are_described_and_typed(role: Path) -> None:
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry, spec in specs.items():
        for name, opt in spec.get("options", {}).items():
            assert opt.get("description"), f"{role.name}/{entry}: {name} has no description"
            assert opt.get("type"), f"{role.name}/{entry}: {name} has no type"
            assert name.startswith(role.name + "_"), f"{role.name}: public variable {name} must start with {role.name}_"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_match_spec_defaults(role: Path) -> None:
    defaults_file = role / "defaults" / "main.yml"
    if not defaults_file.is_file():
        pytest.skip("role has no defaults")
    defaults = _load(defaults_file)
    options = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"].get("options", {})
    for name, opt in options.items():
        if "default" in opt and name in defaults and "{{" not in str(defaults[name]):
            assert opt["default"] == defaults[name], f"{role.name}: {name} default differs between spec and defaults"
