"""The identity peer (KDC, 389-ds, FreeIPA JSON-RPC) for the FreeIPA integration tests.

The peer is started once (idempotently: an already running one is reused) by
tests/peers/identity.py; the Debian packages it needs come from
`scripts/bootstrap-host.sh --identity`, which installs only what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PEER = ROOT / "tests" / "peers" / "identity.py"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def identity() -> dict:
    subprocess.run([str(ROOT / "scripts" / "bootstrap-host.sh"), "--identity"], check=True)
    out = subprocess.run([sys.executable, str(PEER), "start", "--platform"], check=True, capture_output=True, text=True)
    info = json.loads(out.stdout)
    info["host"] = f"127.0.0.1:{info['ports']['rpc']}"
    return info


@pytest.fixture(scope="session")
def ipa_conn(identity) -> dict:
    """The connection options every freeipa_* module takes, as the admin."""
    return {
        "ipa_host": identity["host"],
        "ipa_user": "admin",
        "ipa_pass": identity["admin"]["password"],
        "ipa_ca_cert": identity["ca"],
    }


@pytest.fixture
def ipa_client(identity):
    """A python-freeipa session as the admin, to look at the server without the modules."""
    from python_freeipa import ClientMeta

    client = ClientMeta(identity["host"], verify_ssl=identity["ca"], dns_discovery=False)
    client.login("admin", identity["admin"]["password"])
    return client


@pytest.fixture
def unique() -> str:
    return "it" + uuid.uuid4().hex[:8]


class Ansible:
    """Runs one module the way a play does (`ansible localhost -m ...`) and returns its result."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.env.update(
            {
                "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
                "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
                "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                "ANSIBLE_LOCALHOST_WARNING": "0",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            }
        )

    def __call__(self, module: str, args: dict, *, check: bool = False, diff: bool = False) -> dict:
        cmd = [
            str(VENV_BIN / "ansible"),
            "localhost",
            "-c",
            "local",
            "-m",
            f"dataplatform.dask.{module}",
            "-a",
            json.dumps(args),
        ]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=False, cwd=ROOT)
        try:
            data = json.loads(res.stdout)
        except ValueError:
            raise AssertionError(f"ansible printed no JSON (rc {res.returncode}): {res.stdout}\n{res.stderr}") from None
        return data["plays"][0]["tasks"][0]["hosts"]["localhost"]

    def four_times(self, module: str, args: dict) -> list[dict]:
        """Check, apply, check again, apply again (the amazon.aws integration pattern)."""
        return [
            self(module, args, check=True, diff=True),
            self(module, args, diff=True),
            self(module, args, check=True, diff=True),
            self(module, args, diff=True),
        ]


@pytest.fixture(scope="session")
def ansible() -> Ansible:
    return Ansible()


def _changed_once(results: list[dict]) -> None:
    """A change: check mode and the first run say changed; both runs after it say not."""
    for r in results:
        assert not r.get("failed"), r.get("msg")
    assert [r["changed"] for r in results] == [True, True, False, False], [r["changed"] for r in results]


@pytest.fixture(scope="session")
def changed_once():
    return _changed_once
