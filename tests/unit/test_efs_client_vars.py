"""What efs_client mounts: source, file system type and options for each way of naming the server.

The role's vars/main.yml is evaluated by Ansible itself (one ansible-playbook run for every
case), with the registered stat of /sbin/mount.efs stubbed per case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "efs_client"
AWS_OPTS = "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev"
FS = "fs-0123456789abcdef0"
CASES = {
    "dns-name": ({}, (f"{FS}.efs.eu-west-1.amazonaws.com:/", "nfs4", AWS_OPTS)),
    "mount-target-ip": ({"efs_client_mount_target_ip": "10.0.3.7"}, ("10.0.3.7:/", "nfs4", AWS_OPTS)),
    "china-partition": (
        {"efs_client_region": "cn-north-1", "efs_client_dns_suffix": "amazonaws.com.cn"},
        (f"{FS}.efs.cn-north-1.amazonaws.com.cn:/", "nfs4", AWS_OPTS),
    ),
    "sub-path": ({"efs_client_source_path": "/dask"}, (f"{FS}.efs.eu-west-1.amazonaws.com:/dask", "nfs4", AWS_OPTS)),
    "efs-utils-tls-iam-access-point": (
        {
            "efs_client_mount_helper": "efs",
            "efs_client_tls": True,
            "efs_client_iam": True,
            "efs_client_access_point": "fsap-0123456789abcdef0",
        },
        (f"{FS}:/", "efs", AWS_OPTS + ",tls,iam,accesspoint=fsap-0123456789abcdef0"),
    ),
    "efs-utils-mount-target-ip": (
        {"efs_client_mount_helper": "efs", "efs_client_tls": True, "efs_client_mount_target_ip": "10.0.3.7"},
        (f"{FS}:/", "efs", AWS_OPTS + ",tls,mounttargetip=10.0.3.7"),
    ),
    "auto-finds-efs-utils": ({"_stub_mount_efs": True}, (f"{FS}:/", "efs", AWS_OPTS)),
    "auto-without-efs-utils": ({"_stub_mount_efs": False}, (f"{FS}.efs.eu-west-1.amazonaws.com:/", "nfs4", AWS_OPTS)),
    "nfs-forced-although-efs-utils": (
        {"_stub_mount_efs": True, "efs_client_mount_helper": "nfs"},
        (f"{FS}.efs.eu-west-1.amazonaws.com:/", "nfs4", AWS_OPTS),
    ),
}
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Evaluate each case
      vars:
        __efs_client_mount_efs: {{stat: {{exists: "{{{{ case.value.get('_stub_mount_efs', false) }}}}"}}}}
        computed: "{{{{ [_efs_client_src, _efs_client_fstype, _efs_client_opts] }}}}"
      ansible.builtin.set_fact:
        results: "{{{{ results | default({{}}) | combine({{case.key: computed}}) }}}}"
      loop: "{{{{ cases | dict2items }}}}"
      loop_control:
        loop_var: case
    - name: Write the results
      ansible.builtin.copy:
        content: "{{{{ results | to_json }}}}"
        dest: {out}
        mode: "0644"
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One ansible-playbook run; each loop item is one case."""
    tmp = tmp_path_factory.mktemp("efs_vars")
    out = tmp / "results.json"
    cases = {name: case[0] for name, case in CASES.items()}
    (tmp / "play.yml").write_text(PLAYBOOK.format(out=out))
    base = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    base |= {"efs_client_file_system_id": FS, "efs_client_region": "eu-west-1", "cases": cases}
    base["ansible_python_interpreter"] = sys.executable
    # Public variables read the current case's override when it has one.
    for name in {k for o in cases.values() for k in o if not k.startswith("_")}:
        default = json.dumps(base.get(name))
        base[name] = f"{{{{ case.value.get('{name}', {default}) }}}}"
    (tmp / "vars.json").write_text(json.dumps(base))
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        "localhost,",
        "-e",
        f"@{tmp / 'vars.json'}",
        "-e",
        f"@{ROLE / 'vars' / 'main.yml'}",
        str(tmp / "play.yml"),
    ]
    env = os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", list(CASES))
def test_mount_source_type_and_options(results: dict[str, list[str]], name: str) -> None:
    assert tuple(results[name]) == CASES[name][1]
