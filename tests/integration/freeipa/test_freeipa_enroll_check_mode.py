"""freeipa_enroll's ipa_client_install path in check mode on this host (no FreeIPA server here, no
systemd on this host: install and configure only):
it plans the packages, the enrolment and the keytab, writes nothing and never logs the password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: true
  roles:
    - role: dataplatform.dask.freeipa_enroll
      vars:
        freeipa_enroll_domain: example.com
        freeipa_enroll_realm: EXAMPLE.COM
        freeipa_enroll_server: ipa1.example.com
        freeipa_enroll_hostname: checkmode.example.com
        freeipa_enroll_principal: enroller
        freeipa_enroll_password: Enrol-Secret-Never-Logged
        freeipa_enroll_start_services: false
        freeipa_enroll_keytabs:
          - {principal: HTTP/checkmode.example.com, path: /tmp/dp-checkmode/http.keytab}
"""


def test_ipa_client_install_in_check_mode(tmp_path):
    if Path("/etc/ipa/default.conf").exists():
        import pytest

        pytest.skip("this host is enrolled in FreeIPA")
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
            "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_LOCALHOST_WARNING": "0",
        }
    )
    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "--check",
            "--diff",
            "--tags",
            "freeipa_enroll_install,freeipa_enroll_configure",
            str(play),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert "Enrol-Secret-Never-Logged" not in res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert data["stats"]["localhost"]["failures"] == 0, res.stdout[-3000:]
    tasks = {t["task"]["name"].split(" : ")[-1]: t["hosts"].get("localhost", {}) for t in data["plays"][0]["tasks"]}
    enrol = tasks.get("Enrol the host in FreeIPA (ipa-client-install --unattended)")
    assert enrol is not None, sorted(tasks)
    assert enrol.get("censored"), "the enrolment task must be no_log"
    assert enrol["changed"] is True  # not enrolled: check mode says it would enrol
    assert not Path("/etc/ipa/default.conf").exists()
    assert not Path("/tmp/dp-checkmode/http.keytab").exists()
