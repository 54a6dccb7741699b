"""packer/dask-worker.pkr.hcl parses as HCL2 and is wired to the bake playbook.

`packer validate` needs Packer >= 1.10 and its amazon/ansible plugins, which are neither on
PyPI nor in Debian (Debian ships 1.6.6, older than required_plugins); so the template is
parsed with python-hcl2 and its references are checked here instead.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "packer" / "dask-worker.pkr.hcl"
BAKE = ROOT / "playbooks" / "bake_worker_ami.yml"


def unquote(value):
    return value.strip('"') if isinstance(value, str) else value


@pytest.fixture(scope="module")
def template() -> dict:
    with TEMPLATE.open() as handle:
        return hcl2.load(handle)


@pytest.fixture(scope="module")
def bake() -> list:
    return yaml.safe_load(BAKE.read_text())


def test_plugins_and_source(template):
    plugins = template["packer"][0]["required_plugins"][0]
    assert unquote(plugins["amazon"]["source"]) == "github.com/hashicorp/amazon"
    assert unquote(plugins["ansible"]["source"]) == "github.com/hashicorp/ansible"
    (source,) = template["source"]
    ebs = source['"amazon-ebs"']['"dask_worker"']
    assert ebs["encrypt_boot"] is True
    assert unquote(ebs["imds_support"]) == "v2.0"
    # The build instance must not carry the tags the inventory selects platform hosts by.
    assert "Project" not in ebs["run_tags"] and "Cluster" not in ebs["run_tags"]


def test_every_variable_used_is_declared_documented_and_defaulted(template):
    declared = {}
    for block in template["variable"]:
        for name, body in block.items():
            declared[unquote(name)] = body
    used = set(re.findall(r"var\.([a-z_]+)", TEMPLATE.read_text()))
    assert used <= set(declared), f"undeclared: {used - set(declared)}"
    assert set(declared) <= used, f"declared but unused: {set(declared) - used}"
    for name, body in declared.items():
        assert unquote(body.get("description")), f"variable {name} has no description"
        assert "default" in body, f"variable {name} has no default"


def test_ansible_provisioner_runs_the_bake_playbook_install_only(template, bake):
    (build,) = template["build"]
    provisioner = build["provisioner"][0]['"ansible"']
    playbook = unquote(provisioner["playbook_file"]).replace("${path.root}", str(TEMPLATE.parent))
    assert Path(playbook).resolve() == BAKE.resolve()
    groups = [unquote(g) for g in provisioner["groups"]]
    (play,) = bake
    assert play["hosts"] in groups
    assert "dask_worker_start_services=false" in provisioner["extra_arguments"]
    for flag in ("dask_worker", "efs_client", "cw_agent", "freeipa_enroll"):
        assert play["vars"][f"{flag}_start_services"] is False


def test_bake_playbook_roles_exist_and_parse(bake):
    roles = [r["role"] for r in bake[0]["roles"]]
    assert roles == [
        "dataplatform.dask.freeipa_enroll",
        "dataplatform.dask.efs_client",
        "dataplatform.dask.cw_agent",
        "dataplatform.dask.dask_worker",
    ]
    for role in roles:
        assert (ROOT / "roles" / role.rsplit(".", 1)[1] / "tasks" / "main.yml").is_file(), role
    bindir = Path(sys.executable).parent
    check = subprocess.run(
        [str(bindir / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(BAKE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
