"""`ansible-playbook --check` against the converged platform, as a platform team runs it before a
change: every role here (freeipa_enroll, slurm_munge, slurm_controller, slurm_node, dask_gateway
with backend slurm, _dask_env) runs to the end in check mode and reports nothing to change.

Runs before the other tests of this scenario (file order), while the hosts are as converge left
them; it changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCENARIO = Path(__file__).resolve().parent.parent
HOSTS = {"gws-ctl", "gws-node1", "gws-node2", "gws-gateway"}
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def what_happened(output: str, status: str) -> list[str]:
    """`host: task` for every result line of that status (changed, fatal, failed) in the output."""
    found, task = [], ""
    for line in output.splitlines():
        if header := re.match(r"^TASK \[(.*)\] \*", line):
            task = header.group(1)
        elif result := re.match(rf"^{status}: \[([^\]]+)\]", line):
            found.append(f"{result.group(1)}: {task}: {line[:300]}")
    return found


def test_check_mode_on_the_converged_hosts_fails_nothing_and_changes_nothing():
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_NOCOLOR="1")
    playbook = Path(sys.executable).parent / "ansible-playbook"
    res = subprocess.run(
        [str(playbook), "--check", "-i", str(inventory), str(SCENARIO / "converge.yml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    out = res.stdout
    recap = {m.group(1): [int(n) for n in m.groups()[1:]] for m in RECAP.finditer(out)}
    assert recap, f"no play recap: rc={res.returncode}\n{out[-3000:]}\n{res.stderr[-3000:]}"
    failed = what_happened(out, "fatal") + what_happened(out, "failed")
    assert res.returncode == 0 and not failed, "failed in check mode:\n" + "\n".join(failed) + res.stderr[-2000:]
    changed = [host for host, (ok, ch, unreachable, fail) in recap.items() if ch or unreachable or fail]
    assert not changed, "check mode would change a converged host:\n" + "\n".join(what_happened(out, "changed"))
    # It did run the roles: every host of the scenario took part.
    assert set(recap) >= HOSTS
    assert all(recap[host][0] > 20 for host in HOSTS), recap
