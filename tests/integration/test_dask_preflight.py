"""Bad input to the Dask roles fails in preflight, names the variable to fix, and changes nothing.

The roles run for real against this machine as `localhost` in check mode: the preflight
asserts come first, so a failing assert proves no task that could change the host ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_role(tmp_path: Path, role: str, extra_vars: dict, groups: str = "") -> subprocess.CompletedProcess:
    inventory = tmp_path / "hosts"
    inventory.write_text(
        f"[all]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n{groups}"
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        textwrap.dedent(f"""\
        - name: Preflight of {role}
          hosts: localhost
          gather_facts: true
          roles:
            - role: dataplatform.dask.{role}
        """)
    )
    (tmp_path / "vars.json").write_text(json.dumps({"dask_env_tls_ca_dir": str(tmp_path / "ca"), **extra_vars}))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache/collections"),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FACT_CACHING": "memory",
    }
    return subprocess.run(
        [BIN / "ansible-playbook", "-i", inventory, "--check", "-e", f"@{tmp_path / 'vars.json'}", playbook],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, out[-2000:]
    for needle in needles:
        assert needle in out, f"{needle!r} not in output:\n{out[-3000:]}"
    assert "changed=0" in out, out[-2000:]
    # nothing past the preflight ran
    assert "Install the system packages" not in out
    assert "Generate the cluster CA key" not in out


CASES = {
    "no scheduler address": (
        "dask_worker",
        {},
        "",
        ["No scheduler address found", "dask_worker_scheduler_address", "dask_worker_scheduler_ssm_parameter"],
    ),
    "memory above RAM": (
        "dask_worker",
        {"dask_worker_scheduler_address": "tls://10.0.0.1:8786", "dask_worker_memory_limit": "900TB"},
        "",
        ["is more than this host's RAM", "dask_worker_memory_limit"],
    ),
    "unparseable memory": (
        "dask_worker",
        {"dask_worker_scheduler_address": "tls://10.0.0.1:8786", "dask_worker_memory_limit": "lots"},
        "",
        ["dask_worker_memory_limit ('lots') must be a size"],
    ),
    "plain address with TLS on": (
        "dask_worker",
        {"dask_worker_scheduler_address": "tcp://10.0.0.1:8786"},
        "",
        ["must look like tls://HOST:PORT", "dask_worker_scheduler_address"],
    ),
    "thresholds out of order": (
        "dask_worker",
        {"dask_worker_scheduler_address": "tls://10.0.0.1:8786", "dask_worker_memory_pause": 0.99},
        "",
        ["The memory thresholds must rise", "dask_worker_memory_terminate"],
    ),
    "supplied CA without files": (
        "dask_scheduler",
        {"dask_env_tls_ca_mode": "supplied", "dask_env_tls_ca_cert_src": "/nonexistent/ca.crt"},
        "",
        ["TLS files missing", "dask_env_tls_ca_key_src"],
    ),
    "same port twice": (
        "dask_scheduler",
        {"dask_scheduler_dashboard_port": 8786},
        "",
        ["must be two different ports", "dask_scheduler_dashboard_port"],
    ),
    "gateway without its directory settings": (
        "dask_gateway",
        {},
        "",
        ["dask_gateway_ldap_uri", "dask_gateway_realm", "dask_gateway_start_services false"],
    ),
    "unknown CA mode": (
        "dask_scheduler",
        {"dask_env_tls_ca_mode": "vault"},
        "",
        ["dask_env_tls_ca_mode"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_before_any_change(tmp_path: Path, case: str) -> None:
    role, extra, groups, needles = CASES[case]
    assert_refused(run_role(tmp_path, role, extra, groups), *needles)
    assert not (tmp_path / "ca").exists()


def test_scheduler_from_inventory_group_passes_preflight(tmp_path: Path) -> None:
    """The positive control: with a scheduler in the group, the worker preflight passes
    (the run then stops at the first install step in check mode or goes on; either way
    the address check did not fail)."""
    result = run_role(tmp_path, "dask_worker", {}, "[dask_scheduler]\nsched.example ansible_host=10.9.8.7\n")
    out = result.stdout + result.stderr
    assert "No scheduler address found" not in out
    assert "Check that a scheduler address can be found" in out


def test_a_gateway_bake_needs_no_directory_settings(tmp_path: Path) -> None:
    """dask_gateway_start_services false (a Packer bake): the preflight asks for no LDAP, realm or
    fleet setting, so the run goes past it to the install."""
    result = run_role(tmp_path, "dask_gateway", {"dask_gateway_start_services": False})
    out = " ".join((result.stdout + result.stderr).split())
    assert "Check the authentication settings (read when the gateway starts)" in out
    assert "dask_gateway_ldap_uri" not in out
    assert "Check the quotas" in out and "leave every user room" not in out
    # ... through the install and the configuration, which write nothing that needs them.
    assert "Prepare the service user, packages and directories" in out
    assert "Install the dask-gateway unit" in out
