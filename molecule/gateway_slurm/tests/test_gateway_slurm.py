"""dask-gateway with backend slurm: users' schedulers and workers are their own Slurm jobs on the
scheduler node and the fleet, a waiting user sees Slurm's reason, limits hold with the reason
shown, and the gateway's sudo rule reaches platform users only."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GATEWAY = "gws-gateway"
CTL = "gws-ctl"
FLEET = {"gws-node1", "gws-node2"}
PY = "/opt/dask/current/bin/python"
PASSWORDS = {"alice": "Alice-Secret123", "bob": "Bob-Secret123", "dave": "Dave-Secret123"}


def sh(host: str, cmd: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", host, "sh", "-c", cmd], capture_output=True, text=True, timeout=timeout, check=False
    )


def check(user: str, action: str, *args) -> dict:
    """One client action as `user` on the gateway host (as alice would from her notebook)."""
    cmd = f"cd /tmp && runuser -u {user} -- {PY} /tmp/gws_checks.py {action} {user} {PASSWORDS[user]} "
    res = sh(GATEWAY, cmd + " ".join(str(a) for a in args))
    assert res.returncode == 0, f"{action} {args}: rc={res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def jobs(user: str) -> list[dict]:
    """The user's running and pending jobs as Slurm reports them (root on the controller)."""
    res = sh(CTL, f"squeue -h -u {user} -o '%i|%j|%u|%T|%P|%N|%r'")
    assert res.returncode == 0, res.stderr
    keys = ["id", "name", "user", "state", "partition", "node", "reason"]
    return [dict(zip(keys, line.split("|"), strict=True)) for line in res.stdout.splitlines() if line]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)


def uid_of(user: str) -> int:
    return int(sh(GATEWAY, f"id -u {user}").stdout)


@pytest.fixture(scope="module", autouse=True)
def client_script():
    subprocess.run(["docker", "cp", str(HERE / "gws_checks.py"), f"{GATEWAY}:/root/gws_checks.py"], check=True)
    assert sh(GATEWAY, "install -m 0644 /root/gws_checks.py /tmp/gws_checks.py").returncode == 0


@pytest.fixture(scope="module")
def alice_cluster():
    # Started with its 2 workers (the workers option): submitted with the scheduler, not after it.
    name = check("alice", "start", 2)["name"]
    yield name
    check("alice", "stop", name)


def test_the_gateway_runs_as_its_service_user_not_root():
    res = sh(GATEWAY, "ps -o user= -C dask-gateway-server")
    assert res.stdout.split() and set(res.stdout.split()) == {"dask-gateway"}, res.stdout


def test_alices_scheduler_and_workers_are_her_slurm_jobs_and_compute(alice_cluster):
    mine = jobs("alice")
    schedulers = [j for j in mine if j["name"] == "dask-scheduler"]
    workers = [j for j in mine if j["name"] == "dask-worker"]
    assert len(schedulers) == 1 and len(workers) == 2, mine
    # Submitted right behind the scheduler, before it ran: the next two job ids.
    first = int(schedulers[0]["id"])
    assert sorted(int(j["id"]) for j in workers) == [first + 1, first + 2], mine
    assert {j["user"] for j in mine} == {"alice"}
    assert {j["state"] for j in mine} == {"RUNNING"}, mine
    assert (schedulers[0]["partition"], schedulers[0]["node"]) == ("schedulers", CTL), schedulers
    assert {j["partition"] for j in workers} == {"workers"}
    assert {j["node"] for j in workers} <= FLEET, workers
    result = check("alice", "compute", alice_cluster)
    assert result["total"] == 500_000_500_000
    assert result["squares"] == sum(i * i for i in range(100))
    alice = uid_of("alice")
    assert result["scheduler"] == {"uid": alice, "host": CTL}
    assert {w["uid"] for w in result["workers"]} == {alice}
    assert {w["host"] for w in result["workers"]} <= FLEET
    # Each started pre-imported: forked by its node's dask-job-launcher into its own job's cgroup.
    for j in schedulers + workers:
        assert_pre_imported(j)
    # The staging directory is in alice's home on the shared volume, hers alone.
    res = sh(CTL, f"stat -c '%U %a' /home/alice/.dask-gateway/{alice_cluster}")
    assert res.stdout.split() == ["alice", "700"], res


def assert_pre_imported(j: dict) -> None:
    """Job ``j``'s dask process is a child of its node's job launcher, in the job's cgroup."""
    node, kind = j["node"], j["name"].removeprefix("dask-")
    launcher_pid = sh(node, "systemctl show -p MainPID --value dask-job-launcher").stdout.strip()
    # The job's processes as Slurm's proctrack/cgroup sees them: its cgroups' members (v1 or v2).
    # (`scontrol listpids` cannot find a dynamic node named apart from its FQDN hostname.)
    found = f"find /sys/fs/cgroup -path '*/job_{j['id']}/*' -name cgroup.procs -exec cat {{}} +"
    pids = sorted(set(sh(node, found).stdout.split()) - {"0"})
    procs = sh(node, f"ps -o pid=,ppid=,user=,comm= -p {','.join(pids)}").stdout if pids else ""
    mine = [line.split() for line in procs.splitlines() if line.split()[-1] == f"dask-{kind}"]
    assert mine, f"no dask-{kind} among job {j['id']}'s processes on {node}: {procs}"
    pid, ppid, user, _comm = mine[0]
    assert (ppid, user) == (launcher_pid, "alice"), mine
    cgroup = sh(node, f"cat /proc/{pid}/cgroup").stdout
    assert f"/job_{j['id']}/" in cgroup, cgroup


def test_with_the_fleet_full_bob_waits_sees_slurms_reason_and_starts_when_it_frees(alice_cluster):
    assert check("alice", "scale", alice_cluster, 4) == {"error": None}
    check("alice", "workers", alice_cluster, 4)  # 4 one-core workers: both fleet nodes full
    bob = check("bob", "new", 0)["name"]
    try:
        assert check("bob", "scale", bob, 1) == {"error": None}

        def waiting():
            # Slurm says "None" until its scheduler's next pass has looked at a new job.
            report = check("bob", "report", bob)
            return report if report["pending"] and report["pending"]["reason"] != "None" else None

        report = wait_for(waiting, 60, "bob's report to say why his worker waits")
        pending = report["pending"]
        assert report["status"] == "RUNNING"  # his scheduler runs; his worker waits
        assert pending["job"].startswith("worker ")
        assert pending["partition"] == "workers"
        assert pending["reason"] in ("Resources", "Priority"), pending
        assert "waiting for Slurm: " in pending["message"]
        assert pending["position"] == 1, pending
        assert [j["state"] for j in jobs("bob") if j["name"] == "dask-worker"] == ["PENDING"]
        # Capacity frees: alice goes back to 2 workers, bob's worker starts and computes.
        assert check("alice", "scale", alice_cluster, 2) == {"error": None}
        assert check("bob", "workers", bob, 1)["workers"] == 1
        result = check("bob", "compute", bob)
        assert result["total"] == 500_000_500_000
        assert {w["uid"] for w in result["workers"]} == {uid_of("bob")}
        # The reason goes within a status period (5 s) of the start: the next squeue poll.
        wait_for(lambda: check("bob", "report", bob)["pending"] is None, 20, "bob's report to stop saying he waits")
    finally:
        check("bob", "stop", bob)


def test_beyond_the_per_user_cap_alice_is_refused_with_the_reason():
    name = check("alice", "new", 0)["name"]
    try:
        # 20-core fleet x 25 %: 5 cores per user; a scheduler and 5 one-core workers are 6.
        refused = check("alice", "scale", name, 5)["error"]
        assert refused and "quota is 5 cores per user" in refused, refused
    finally:
        check("alice", "stop", name)


def test_past_slurms_own_per_user_limit_bobs_worker_is_held_with_the_reason():
    # The analysts QOS allows 2 cores per user: bob's scheduler and one worker. The gateway's
    # wider quota lets the second worker through; Slurm holds it and bob is told why.
    bob = check("bob", "new", 1)["name"]
    try:
        assert check("bob", "scale", bob, 2) == {"error": None}

        def held():
            pending = check("bob", "report", bob)["pending"]
            return pending if pending and pending["reason"].startswith("QOSMax") else None

        pending = wait_for(held, 60, "bob's second worker to be held by the QOS")
        assert pending["reason"] == "QOSMaxCpuPerUserLimit", pending
        assert "your clusters already use your CPU share" in pending["message"]
    finally:
        check("bob", "stop", bob)
    wait_for(lambda: not jobs("bob"), 60, "bob's jobs to be cancelled with his cluster")


def test_a_node_lost_mid_computation_its_workers_are_replaced_and_the_computation_finishes(alice_cluster):
    check("alice", "workers", alice_cluster, 2)
    workers = [j for j in jobs("alice") if j["name"] == "dask-worker"]
    victim = workers[0]["node"]
    (other,) = FLEET - {victim}
    lost = {j["id"] for j in workers if j["node"] == victim}
    cmd = f"cd /tmp && runuser -u alice -- {PY} /tmp/gws_checks.py long alice {PASSWORDS['alice']} {alice_cluster} 60"
    run = subprocess.Popen(
        ["docker", "exec", GATEWAY, "sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(8)
        assert run.poll() is None, run.communicate()
        # The instance dies: slurmd, the job steps and alice's processes with it.
        sh(victim, "systemctl stop slurmd; pkill -9 -x slurmstepd; pkill -9 -u alice; true")
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["total"] == sum(i * i for i in range(60)), result
        assert other in result["hosts"], result

        # The gateway replaced the lost workers on the node that is left: two again, all there.
        def replaced():
            now = [j for j in jobs("alice") if j["name"] == "dask-worker"]
            ok = len(now) == 2 and {j["state"] for j in now} == {"RUNNING"} and {j["node"] for j in now} == {other}
            return now if ok and not lost & {j["id"] for j in now} else None

        wait_for(replaced, 120, f"alice's workers to be replaced on {other}")
        assert check("alice", "workers", alice_cluster, 2)["workers"] == 2
        assert check("alice", "compute", alice_cluster)["total"] == 500_000_500_000
    finally:
        if run.poll() is None:
            run.kill()
        sh(victim, "systemctl start slurmd")
        wait_for(
            lambda: sh(CTL, f"sinfo -h -n {victim} -o %T").stdout.strip() in ("idle", "mixed", "allocated"),
            120,
            f"{victim} back in service",
        )


@pytest.fixture(scope="module")
def launcher() -> str:
    settings = json.loads(sh(GATEWAY, "cat /etc/dask-gateway/settings.json").stdout)
    return settings["slurm"]["launcher"]


def test_sudo_lets_the_gateway_run_the_launcher_as_platform_users_only(launcher):
    request = json.dumps({"action": "stop", "cmd": ["/usr/bin/id", "-un"], "env": {}})

    def as_gateway(cmd):
        return sh(GATEWAY, f"echo '{request}' | runuser -u dask-gateway -- sudo -n {cmd}")

    # alice: the launcher runs, as alice (the request asks it to run `id -un`).
    ok = as_gateway(f"-u alice {launcher}")
    assert ok.returncode == 0, ok
    assert json.loads(ok.stdout)["stdout"].strip() == "alice", ok.stdout
    for target, why in [("root", "never root"), ("carol", "in no platform group"), ("dask-gateway", "itself")]:
        res = as_gateway(f"-u {target} {launcher}")
        assert res.returncode != 0 and res.stdout == "", f"sudo ran the launcher as {target} ({why}): {res}"
        assert "not allowed" in res.stderr or "password is required" in res.stderr, res.stderr
    # Nothing but the launcher, even as a platform user.
    res = as_gateway("-u alice /usr/bin/id")
    assert res.returncode != 0 and res.stdout == "", res
    res = sh(GATEWAY, "stat -c '%a %U' /etc/sudoers.d/dask-gateway && visudo -cf /etc/sudoers.d/dask-gateway")
    assert res.returncode == 0 and res.stdout.splitlines()[0] == "440 root", res
    # What sudo runs as users is out of the gateway's reach: it can change neither the launcher nor
    # the Python file the launcher runs, nor replace them in their directories.
    script = sh(GATEWAY, f"sed -n 's/^exec .* -IS //p' {launcher}").stdout.split()[0]
    for path in (launcher, script):
        for target in (path, path.rsplit("/", 1)[0]):
            res = sh(GATEWAY, f"runuser -u dask-gateway -- test -w {target}")
            assert res.returncode != 0, f"{target} is writable by the gateway's service user"
