"""Behaviour of the Slurm foundation: Dask runs as the user on the fleet, the queue orders and
limits users, accounting counts CPU time, and a lost node's job is requeued elsewhere.

Everything waits on a state (a job RUNNING, a node DOWN), never on elapsed time alone.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
import pytest

CTL = "slurm-ctl"
FLEET = ["slurm-node1", "slurm-node2"]
VENV = "/opt/dask/current/bin"
HERE = Path(__file__).resolve().parent
# Upper bounds for waiting on a state; a test fails only when the state never comes.
PATIENCE = 180


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=300)


def sh(host: str, cmd: str, user: str = "root", check: bool = True) -> subprocess.CompletedProcess:
    return docker("exec", "-u", user, "-w", "/tmp", host, "bash", "-lc", cmd, check=check)


def out(host: str, cmd: str, user: str = "root") -> str:
    return sh(host, cmd, user).stdout.strip()


def sbatch(user: str, args: str) -> int:
    """Submit as ``user``; returns the job id."""
    return int(out(CTL, f"sbatch --parsable -o /tmp/slurm-%j.out {args}", user).split(";")[0])


def job(job_id: int) -> dict:
    """scontrol's view of a job as a dict (root sees every job)."""
    text = out(CTL, f"scontrol show job -o {job_id}")
    fields = {}
    for token in text.split():
        key, _sep, value = token.partition("=")
        fields[key] = value
    return fields


def wait_for(what: str, predicate, timeout: float = PATIENCE, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def pending_reason(job_id: int) -> str:
    """'PENDING <reason>' once the scheduler has looked at the job (before that the reason is None)."""
    return wait_for(
        f"a pending reason for job {job_id}",
        lambda: (r := out(CTL, f"squeue -h -j {job_id} -o '%T %r'")) and not r.endswith(" None") and r,
    )


def wait_state(job_id: int, state: str) -> dict:
    return wait_for(f"job {job_id} {state}", lambda: (j := job(job_id)) and j["JobState"] == state and j)


def cancel_all() -> None:
    sh(CTL, "for u in alice bob carol dave; do scancel -u $u; done", check=False)
    wait_for("an empty queue", lambda: out(CTL, "squeue -h -o %i") == "")


def aws(service: str):
    """A client of the scenario's moto, at the address the hooks on the controller use."""
    settings = dict(line.split("=", 1) for line in out(CTL, "cat /etc/default/slurm-fleet").splitlines() if "=" in line)
    return boto3.client(
        service,
        endpoint_url=settings["AWS_ENDPOINT_URL"],
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def group() -> dict:
    return aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["molecule-fleet"])[
        "AutoScalingGroups"
    ][0]


def ssm_values(kind: str) -> dict:
    page = aws("ssm").get_parameters_by_path(Path=f"/dataplatform/slurm/molecule/{kind}")
    return {p["Name"].rsplit("/", 1)[-1]: p["Value"] for p in page["Parameters"]}


def user_caps() -> dict:
    """{qos: MaxTRESPerUser} as slurmdbd holds it."""
    rows = out(CTL, "sacctmgr -nP show qos format=name,maxtrespu")
    return dict(line.split("|") for line in rows.splitlines())


def wait_caps(engineers: str, analysts: str) -> None:
    """The fleet timer (every 30 s) has set the per-user caps for the fleet that is up."""
    want = {"engineers": engineers, "analysts": analysts}
    wait_for(f"per-user caps {want}", lambda: (c := user_caps()) and all(c.get(k) == v for k, v in want.items()) and c)


@pytest.fixture(scope="session", autouse=True)
def _caps_for_the_whole_fleet():
    # Both fleet nodes up (2 CPUs, 2000 MB each): engineers 1.0 of it, analysts 0.5.
    wait_caps("cpu=4,mem=4000M", "cpu=2,mem=2000M")


@pytest.fixture(autouse=True)
def _empty_queue():
    cancel_all()
    yield
    cancel_all()


def test_nodes_registered_dynamically_in_their_partitions():
    sinfo = out(CTL, "sinfo -h -N -o '%N %P %f %T'")
    rows = {tuple(line.split()[:3]) for line in sinfo.splitlines()}
    assert ("slurm-ctl", "schedulers", "dask_scheduler") in rows, sinfo
    for node in FLEET:
        assert (node, "workers*", "fleet") in rows, sinfo
    # No node is written in slurm.conf: they registered themselves (slurmd -Z).
    assert "NodeName" not in out(CTL, "cat /etc/slurm/slurm.conf")
    assert "DYNAMIC" in out(CTL, "scontrol show node slurm-node1")


def test_users_have_the_accounts_of_their_groups():
    assoc = out(CTL, "sacctmgr -nP show assoc where cluster=molecule format=user,account")
    pairs = {tuple(line.split("|")) for line in assoc.splitlines() if line.split("|")[0]}
    for user, account in [("alice", "data_engineers"), ("dave", "data_engineers"), ("bob", "data_analysts")]:
        assert (user, account) in pairs, assoc
    # Without an association Slurm refuses the job (AccountingStorageEnforce=associations).
    sh(CTL, "id nobody")
    refused = sh(CTL, "sbatch -p workers --wrap true", "nobody", check=False)
    assert refused.returncode != 0
    assert "Invalid account or account/partition combination" in refused.stderr, refused.stderr


def test_power_saving_hooks_run_as_slurm_and_name_the_group():
    config = out(CTL, "scontrol show config")
    assert re.search(r"^ResumeProgram\s*= /usr/local/libexec/dask/slurm/slurm-fleet-resume$", config, re.M), config
    assert re.search(r"^SuspendExcParts\s*= schedulers$", config, re.M), config
    # The installed hook runs with the Dask environment's Python and the collection's asg.py
    # beside it (no Ansible on the node), against the group in moto: it is full (MaxSize 2).
    hook = sh(CTL, "/usr/local/libexec/dask/slurm/slurm-fleet-resume slurm-node1", "slurm", check=False)
    assert hook.returncode == 0, hook.stderr
    assert "slurm_fleet: resume slurm-node1: capped at 2 nodes (asked for 3)" in hook.stderr, hook.stderr
    assert group()["DesiredCapacity"] == 2


def test_dask_scheduler_and_worker_run_as_alice_and_compute():
    ip = out(CTL, "hostname -I | awk '{print $1}'")
    address = f"tcp://{ip}:8991"
    sched = sbatch(
        "alice",
        f"-p schedulers -c1 --mem=1000 -J dask-scheduler "
        f"--wrap '{VENV}/dask scheduler --host {ip} --port 8991 --dashboard-address :0'",
    )
    worker = sbatch(
        "alice",
        f"-p workers -w slurm-node1 -c2 --mem=1500 -J dask-worker "
        f"--wrap '{VENV}/dask worker {address} --nthreads 2 --memory-limit 1GB --dashboard-address :0'",
    )
    wait_state(sched, "RUNNING")
    wait_state(worker, "RUNNING")
    # Not /tmp: docker cp writes under the container's tmpfs mounts, where nobody sees the file.
    docker("cp", str(HERE / "dask_job_checks.py"), f"{CTL}:/srv/dask_job_checks.py")
    sh(CTL, "chmod 0644 /srv/dask_job_checks.py")
    result = json.loads(out(CTL, f"{VENV}/python /srv/dask_job_checks.py {address}", "alice").splitlines()[-1])
    assert result["total"] == sum(i * i for i in range(1000))
    assert set(result["users"]) == {"alice"}
    assert result["hosts"] == ["slurm-node1"]
    assert job(worker)["NodeList"] == "slurm-node1"
    assert job(sched)["NodeList"] == CTL
    # The worker is confined to the job's cgroup on the node (2 cores, its memory).
    cgroup = out(job(worker)["NodeList"], "cat /proc/$(pgrep -u alice -f 'dask worker' | head -1)/cgroup")
    assert f"job_{worker}" in cgroup


def test_full_fleet_makes_a_user_wait_with_the_reason_then_start():
    fill = [sbatch("alice", "-p workers -c2 --wrap 'sleep 600'") for _node in FLEET]
    for j in fill:
        wait_state(j, "RUNNING")
    waiting = sbatch("bob", "-p workers -c1 --wrap 'sleep 600'")
    reason = pending_reason(waiting)
    assert reason == "PENDING Resources", reason
    sh(CTL, f"scancel {fill[0]}")
    running = wait_state(waiting, "RUNNING")
    assert running["NodeList"] in FLEET


def test_engineer_queued_after_an_analyst_starts_first():
    fill = [sbatch("alice", "-p workers -c2 --wrap 'sleep 600'") for _node in FLEET]
    for j in fill:
        wait_state(j, "RUNNING")
    analyst = sbatch("carol", "-p workers -c2 --wrap 'sleep 600'")
    wait_for("carol's job pending", lambda: job(analyst)["JobState"] == "PENDING")
    engineer = sbatch("dave", "-p workers -c2 --wrap 'sleep 600'")
    wait_for("dave's job pending", lambda: job(engineer)["JobState"] == "PENDING")
    assert int(job(engineer)["Priority"]) > int(job(analyst)["Priority"])
    sh(CTL, f"scancel {fill[0]}")
    wait_state(engineer, "RUNNING")
    assert job(analyst)["JobState"] == "PENDING"
    # ... and the analyst is next once capacity frees.
    sh(CTL, f"scancel {fill[1]}")
    wait_state(analyst, "RUNNING")


def test_request_beyond_the_users_cap_is_refused_with_the_reason():
    # alice (engineers: 2 cores per job, 4 per user) asks for 3 cores in one job: refused at once.
    refused = sh(CTL, "sbatch -p workers -c3 --wrap true", "alice", check=False)
    assert refused.returncode != 0
    assert "QOSMaxCpuPerJobLimit" in refused.stderr, refused.stderr
    # bob (analysts: 2 cores per user) asks for 3: refused too, naming his per-user cap.
    refused = sh(CTL, "sbatch -p workers -c3 --wrap true", "bob", check=False)
    assert refused.returncode != 0
    assert "QOSMaxCpuPerUserLimit" in refused.stderr, refused.stderr
    # Within the per-job cap but over bob's per-user cap while his first job runs: held, with the
    # reason visible, and started once the first one ends.
    first = sbatch("bob", "-p workers -c2 --wrap 'sleep 600'")
    wait_state(first, "RUNNING")
    second = sbatch("bob", "-p workers -c2 --wrap 'sleep 600'")
    reason = pending_reason(second)
    assert reason == "PENDING QOSMaxCpuPerUserLimit", reason
    sh(CTL, f"scancel {first}")
    wait_state(second, "RUNNING")


def test_private_data_hides_others_jobs_but_the_gateway_operator_sees_them():
    mine = sbatch("alice", "-p workers -c1 --wrap 'sleep 600'")
    wait_state(mine, "RUNNING")
    assert out(CTL, "squeue -h -o %i", "bob") == ""
    assert str(mine) in out(CTL, "squeue -h -o %i", "dask-gateway")
    assert "alice" in out(CTL, f"scontrol show job {mine}", "dask-gateway")


def test_sacct_reports_cpu_time_per_user():
    burn = sbatch("alice", "-p workers -c1 --wrap 'timeout 3 sh -c \"while :; do :; done\"; true'")
    wait_for("alice's CPU job to finish", lambda: job(burn)["JobState"] == "COMPLETED")

    def usage():
        rows = out(CTL, "sacct -a -X -n -P -S now-1hour -o user,cputimeraw,state")
        per_user = {}
        for line in rows.splitlines():
            user, seconds, _state = line.split("|")
            per_user[user] = per_user.get(user, 0) + int(seconds or 0)
        return per_user if per_user.get("alice", 0) > 0 else None

    per_user = wait_for("alice's CPU time in sacct", usage)
    assert per_user["alice"] >= 3


def test_lost_node_requeues_the_job_on_another_node():
    victim_job = sbatch("alice", "-p workers -c2 --requeue --wrap 'sleep 600'")
    node = wait_state(victim_job, "RUNNING")["NodeList"]
    other = next(n for n in FLEET if n != node)
    sh(node, "systemctl stop slurmd")
    try:
        wait_for(f"{node} DOWN", lambda: "DOWN" in out(CTL, f"sinfo -h -n {node} -o %T").upper())
        # One fleet node left: the per-user caps shrink with it (engineers to one node; analysts
        # stay at one job's 2 cores, the floor, rather than half a node).
        wait_caps("cpu=2,mem=2000M", "cpu=2,mem=2000M")
        held = wait_for("the job requeued", lambda: (j := job(victim_job)) and int(j["Restarts"]) >= 1 and j)
        assert held["JobState"] in ("PENDING", "RUNNING"), held["JobState"]
        # Slurm keeps a requeued batch job back until its old credential expires (BeginTime,
        # 120 s); let it go now rather than wait that out.
        if held["JobState"] == "PENDING":
            sh(CTL, f"scontrol update jobid={victim_job} starttime=now")
        requeued = wait_for(
            "the job running again elsewhere",
            lambda: (j := job(victim_job)) and j["JobState"] == "RUNNING" and j["NodeList"] == other and j,
            timeout=PATIENCE * 2,
        )
        assert int(requeued["Restarts"]) >= 1
    finally:
        sh(node, "pkill -u alice || true; systemctl start slurmd", check=False)
        wait_for(f"{node} back", lambda: out(CTL, f"sinfo -h -n {node} -o %T") in ("idle", "mixed", "allocated"))
    # The node is back: the caps grow again, and the change is in the journal.
    wait_caps("cpu=4,mem=4000M", "cpu=2,mem=2000M")
    journal = out(CTL, "journalctl -u slurm-fleet-lifecycle.service --no-pager -o cat")
    assert "caps: qos engineers MaxTRESPerUser cpu=4,mem=4000 -> cpu=2,mem=2000" in journal, journal
    assert "caps: qos engineers MaxTRESPerUser cpu=2,mem=2000 -> cpu=4,mem=4000" in journal, journal


def test_placeholder_nothing_joined_within_resume_timeout_is_reset():
    """A resumed placeholder no instance joins goes DOWN; the fleet timer makes it usable again."""
    aws("autoscaling").update_auto_scaling_group(AutoScalingGroupName="molecule-fleet", MaxSize=3)
    before = {i["InstanceId"] for i in group()["Instances"]}
    conf = "/etc/slurm/slurm.conf"

    def resets() -> int:
        return out(CTL, "cat /var/log/slurm/slurm-fleet.log").count("placeholders fleet-1: down after ResumeTimeout")

    resets_before = resets()
    # A launch that never boots, without waiting out the scenario's 600 s: ResumeTimeout 20 s
    # (and SuspendTimeout 20 s, not 120 s, for the power-down that ends the test).
    sh(
        CTL,
        f"cp {conf} {conf}.test && sed -i -e 's/^ResumeTimeout=.*/ResumeTimeout=20/' "
        f"-e 's/^SuspendTimeout=.*/SuspendTimeout=20/' {conf} && scontrol reconfigure",
    )
    try:
        wait_for("placeholder fleet-1", lambda: "POWERED_DOWN" in out(CTL, "scontrol show node fleet-1 -o || true"))
        for node in FLEET:  # alice holds the fleet that is up
            wait_state(sbatch("alice", f"-p workers -c2 -w {node} --wrap 'sleep 600'"), "RUNNING")
        waiting = sbatch("bob", "-p workers -c2 --requeue --wrap 'sleep 600'")
        wait_for("bob's job given fleet-1", lambda: job(waiting)["NodeList"] == "fleet-1")
        wait_for("the resume hook", lambda: group()["DesiredCapacity"] == 3)
        # Nothing boots as the new instance: slurmctld gives up on fleet-1 after 20 s, requeues
        # bob's job and leaves the node DOWN ("ResumeTimeout reached"), where Slurm alone would
        # never offer it again. The timer (every 30 s) clears its records and returns it to idle.
        wait_for("the timer's reset", lambda: resets() > resets_before, timeout=PATIENCE)
        # Slurm offers it again: idle and powered down, or already given to bob's requeued job
        # (once its requeue hold ends) and powering up for a second try.
        node = out(CTL, "scontrol show node fleet-1 -o")
        states = node.split(" State=", 1)[1].split()[0].split("+")
        assert "DOWN" not in states and {"POWERED_DOWN", "POWERING_UP"} & set(states), node
        assert "ResumeTimeout" not in node, node
        requeued = job(waiting)
        assert int(requeued["Restarts"]) >= 1, requeued
        assert requeued["JobState"] == "PENDING" or requeued["NodeList"] == "fleet-1", requeued
    finally:
        cancel_all()
        # A second resume of fleet-1 may be under way: end it (SuspendProgram clears its record).
        sh(CTL, "scontrol update nodename=fleet-1 state=power_down_force", check=False)
        # The instance the resume hook asked for never booted: it goes, as a failed launch would.
        for instance in {i["InstanceId"] for i in group()["Instances"]} - before:
            aws("autoscaling").terminate_instance_in_auto_scaling_group(
                InstanceId=instance, ShouldDecrementDesiredCapacity=True
            )
        aws("autoscaling").update_auto_scaling_group(AutoScalingGroupName="molecule-fleet", MaxSize=2)
        # SuspendTimeout passes before a node powering down counts as asleep (and can be removed).
        try:
            wait_for("no placeholder left", lambda: "fleet-" not in out(CTL, "sinfo -h -o %N"), timeout=PATIENCE)
            wait_for("no record left", lambda: not ssm_values("wanted") and not ssm_values("claims"))
        finally:
            sh(CTL, f"mv {conf}.test {conf} && scontrol reconfigure", check=False)


def test_busy_fleet_grows_through_a_placeholder_a_booting_node_claims():
    """The last test: slurm-node1 leaves and comes back as a baked instance would boot."""
    # The group gets room for one more instance: the fleet timer adds a powered-down placeholder.
    aws("autoscaling").update_auto_scaling_group(AutoScalingGroupName="molecule-fleet", MaxSize=3)
    wait_for("placeholder fleet-1", lambda: "POWERED_DOWN" in out(CTL, "scontrol show node fleet-1 -o || true"))
    before = {i["InstanceId"] for i in group()["Instances"]}
    # slurm-node1's instance goes (as SuspendProgram would end it): no key left on its disk, the
    # way a freshly baked image starts, and its node leaves Slurm.
    sh("slurm-node1", "rm -f /etc/munge/munge.key")
    docker("stop", "slurm-node1")
    sh(CTL, "scontrol delete nodename=slurm-node1")
    # The fleet is fully busy: alice holds slurm-node2, bob's job has no node that is up.
    fill = sbatch("alice", "-p workers -c2 --wrap 'sleep 600'")
    wait_state(fill, "RUNNING")
    waiting = sbatch("bob", "-p workers -c2 --wrap 'sleep 600'")
    node = wait_for("bob's job given a placeholder", lambda: (n := job(waiting)["NodeList"]).startswith("fleet-") and n)
    # ResumeProgram was called for that very placeholder: it recorded it as wanted, then raised
    # the group's desired capacity 2 -> 3 (moto starts an instance).
    wait_for("the resume hook", lambda: group()["DesiredCapacity"] == 3)
    assert list(ssm_values("wanted")) == [node]
    fleet_log = out(CTL, "cat /var/log/slurm/slurm-fleet.log")
    assert f"slurm_fleet: resume {node}: desired capacity 2 -> 3" in fleet_log, fleet_log[-3000:]
    (new_instance,) = {i["InstanceId"] for i in group()["Instances"]} - before
    # slurm-node1 boots as that new instance (no instance metadata in a container: its id is given).
    settings = [
        line for line in out(CTL, "cat /etc/default/slurm-fleet").splitlines() if "SLURM_NODE_INSTANCE_ID" not in line
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".env") as claim_env:
        claim_env.write("\n".join([*settings, f"SLURM_NODE_INSTANCE_ID={new_instance}", ""]))
        claim_env.flush()
        docker("cp", claim_env.name, "slurm-node1:/etc/default/slurm-node-claim")
    docker("start", "slurm-node1")
    running = wait_state(waiting, "RUNNING")
    assert running["NodeList"] == node
    assert "NodeHostName=slurm-node1" in out(CTL, f"scontrol show node {node} -o")
    assert ssm_values("claims") == {node: new_instance}
    # Its first boot fetched the munge key from SSM before munge started.
    fetched = out("slurm-node1", "journalctl -b -u munge-key-fetch.service -o cat --no-pager")
    assert "wrote /etc/munge/munge.key from ssm:/molecule/slurm/munge-key" in fetched, fetched
    assert out("slurm-node1", "stat -c '%a %U' /etc/munge/munge.key") == "400 munge"
    claimed = out("slurm-node1", "journalctl -b -u slurm-node-claim.service -o cat --no-pager")
    assert f"{new_instance} claimed {node}" in claimed, claimed
