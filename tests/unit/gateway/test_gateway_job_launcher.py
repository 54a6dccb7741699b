"""The Slurm node's pre-imported job starts: dask-job-start hands a job's command line to the
node's dask-job-launcher, which forks it into the job's cgroup as the job's user; anything the
launcher refuses, or a node without it, starts fresh. The Molecule scenario gateway_slurm runs it
under real Slurm jobs; here the requester's cgroup is a stand-in (no slurmstepd on this host)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dataplatform_dask.forkserver import job_start as job_start_mod
from dataplatform_dask.forkserver import slurm_node

DASK = str(Path(sys.executable).parent / "dask")
# The roles' wrapper runs the installed file as a script with -I -S (standard library only).
CLIENT = Path(job_start_mod.__file__)
CGROUP = "/system.slice/slurmstepd.scope/job_7/step_batch/user/task_0"
V2 = {"": ("/sys/fs/cgroup", "/")}
# A hybrid host (as Docker's here): cgroup v1 controllers, the unified hierarchy beside them.
HYBRID = {
    "": ("/sys/fs/cgroup/unified", "/"),
    "freezer": ("/sys/fs/cgroup/freezer", "/"),
    "memory": ("/sys/fs/cgroup/memory", "/"),
    "cpu,cpuacct": ("/sys/fs/cgroup/cpu,cpuacct", "/"),
    "name=systemd": ("/sys/fs/cgroup/systemd", "/"),
}
V1_JOB = "/slurm/uid_1500/job_7/step_batch/task_0"
MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
"""


def fake_proc(tmp_path, cgroup_lines, groups="1500 70001"):
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text("\n".join(cgroup_lines) + "\n")
    (proc / "4242" / "status").write_text(f"Name:\tsh\nUid:\t1500\t1500\t1500\t1500\nGroups:\t{groups}\n")
    return str(proc)


def message(**kw):
    msg = {
        "argv": [DASK, "worker", "tls://10.0.0.5:8786"],
        "env": {"SLURM_JOB_ID": "7"},
        "cwd": "/home/alice",
        "umask": 0o022,
    }
    msg.update(kw)
    return msg


def test_a_jobs_request_takes_the_identity_and_cgroup_the_kernel_reports(tmp_path):
    proc = fake_proc(tmp_path, ["0::" + CGROUP])
    req = slurm_node.make_request(
        message(), (4242, 1500, 1500), [5, 6, 7], dask_command=DASK, min_uid=1000, proc=proc, mounts=V2
    )
    assert (req["uid"], req["gid"], req["groups"]) == (1500, 1500, [1500, 70001])
    assert (req["cgroups"], req["job_id"], req["fds"], req["umask"]) == (
        ["/sys/fs/cgroup" + CGROUP],
        "7",
        [5, 6, 7],
        0o022,
    )


def test_the_same_environment_by_another_path_is_accepted(tmp_path):
    venv = tmp_path / "venv-1"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "dask").write_text("")
    (tmp_path / "current").symlink_to(venv)
    proc = fake_proc(tmp_path, ["0::" + CGROUP])
    current = str(tmp_path / "current" / "bin" / "dask")

    def request(dask):
        argv = [str(dask), "scheduler"]
        return slurm_node.make_request(
            message(argv=argv), (4242, 1500, 1500), [5, 6, 7], dask_command=current, min_uid=1000, proc=proc, mounts=V2
        )

    assert request(venv / "bin" / "dask")["argv"] == [current, "scheduler"]
    other = tmp_path / "venv-2" / "bin"
    other.mkdir(parents=True)
    (other / "dask").write_text("")
    with pytest.raises(slurm_node.RequestError, match="refusing to run"):
        request(other / "dask")


def test_on_a_hybrid_host_the_child_joins_every_hierarchys_cgroup(tmp_path):
    (tmp_path / "mountinfo").write_text(MOUNTINFO)
    assert slurm_node.cgroup_mounts(str(tmp_path / "mountinfo")) == HYBRID
    proc = fake_proc(
        tmp_path,
        [
            "12:freezer:" + V1_JOB,
            "6:memory:" + V1_JOB,
            "4:cpu,cpuacct:" + V1_JOB,
            "3:pids:/docker/abc",
            "1:name=systemd:/docker/abc",
            "0::/docker/abc",
        ],
    )
    dirs, job = slurm_node.job_cgroup(4242, proc, HYBRID)
    assert job == "7"
    assert dirs == [
        "/sys/fs/cgroup/freezer" + V1_JOB,
        "/sys/fs/cgroup/memory" + V1_JOB,
        "/sys/fs/cgroup/cpu,cpuacct" + V1_JOB,
        "/sys/fs/cgroup/systemd/docker/abc",
        "/sys/fs/cgroup/unified/docker/abc",
    ]  # pids: not mounted here, skipped


def test_a_job_cgroup_that_cannot_be_joined_refuses_other_hierarchies_may_fail(tmp_path):
    job = tmp_path / "freezer" / "job_7"
    job.mkdir(parents=True)
    (job / "cgroup.procs").write_text("")
    slurm_node.join_cgroups(os.getpid(), [str(job), str(tmp_path / "absent")])
    assert (job / "cgroup.procs").read_text() == str(os.getpid())
    with pytest.raises(slurm_node.RequestError, match="cannot join the job's cgroup"):
        slurm_node.join_cgroups(os.getpid(), [str(tmp_path / "memory" / "job_7")])


@pytest.mark.parametrize(
    ("cgroup", "peer", "change", "fds", "reason"),
    [
        (["0::/user.slice/user-1500.slice/session-3.scope"], (4242, 1500, 1500), {}, 3, "not in a Slurm job's cgroup"),
        (["0::/system.slice/x/job_7/../../user.slice"], (4242, 1500, 1500), {}, 3, "refusing cgroup path"),
        (["12:memory:/slurm/uid_1500/job_7", "0::/slurm/job_8"], (4242, 1500, 1500), {}, 3, "not in a Slurm job"),
        (["0::" + CGROUP], (4242, 0, 0), {}, 3, "refusing uid 0"),
        (["0::" + CGROUP], (4242, 999, 999), {}, 3, "uids >= 1000"),
        (["0::" + CGROUP], (4242, 1500, 1500), {"argv": ["/bin/sh", "-c", "id"]}, 3, "refusing to run"),
        (["0::" + CGROUP], (4242, 1500, 1500), {"env": {"SLURM_JOB_ID": "8"}}, 3, "not the cgroup's job 7"),
        (["0::" + CGROUP], (4242, 1500, 1500), {"umask": "x"}, 3, "malformed"),
        (["0::" + CGROUP], (4242, 1500, 1500), {}, 1, "expected stdin, stdout and stderr"),
    ],
)
def test_anything_else_is_refused_with_the_reason(tmp_path, cgroup, peer, change, fds, reason):
    proc = fake_proc(tmp_path, cgroup)
    with pytest.raises(slurm_node.RequestError, match=reason):
        slurm_node.make_request(
            message(**change), peer, list(range(5, 5 + fds)), dask_command=DASK, min_uid=1000, proc=proc, mounts=V2
        )


def test_a_process_that_is_gone_is_refused(tmp_path):
    with pytest.raises(slurm_node.RequestError, match="cannot read the cgroup of pid 4243"):
        slurm_node.job_cgroup(4243, fake_proc(tmp_path, ["0::" + CGROUP]), V2)


# --- end to end: the service and the wrapper as processes ------------------------------------------

SERVER = textwrap.dedent(
    """
    import sys
    from dataplatform_dask.forkserver import core, slurm_node
    sock_path, cgroup_root, mode = sys.argv[1:4]
    # No slurmstepd here: the requester "is" in job 7's cgroup, or (mode refuse) in none.
    if mode == "refuse":
        def job_cgroup(pid, proc="/proc", mounts=None):
            raise slurm_node.RequestError(f"pid {pid} is not in a Slurm job's cgroup (/user.slice)")
    else:
        def job_cgroup(pid, proc="/proc", mounts=None):
            return ([cgroup_root + "/job_7/step_batch"], "7")
    slurm_node.job_cgroup = job_cgroup
    core.preload(["distributed", "distributed.cli.dask_scheduler"])
    sock = slurm_node.listen(sock_path)
    print("ready", flush=True)
    slurm_node.Server(sock, sys.argv[4], 1000, allow_self=True, mounts={}).serve()
    """
)


class Service:
    def __init__(self, tmp_path, mode="accept"):
        self.sock = str(tmp_path / "launcher.sock")
        self.cgroup_root = tmp_path / "cgroup"
        (self.cgroup_root / "job_7" / "step_batch").mkdir(parents=True)
        (self.cgroup_root / "job_7" / "step_batch" / "cgroup.procs").write_text("")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, self.sock, str(self.cgroup_root), mode, DASK],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def log(self):
        self.proc.terminate()
        out = self.proc.communicate(timeout=30)[0]
        return out


def job_start(sock, *args, **kw):
    env = dict(os.environ, DASK_JOB_LAUNCHER_SOCKET=sock, SLURM_JOB_ID="7")
    return subprocess.Popen(
        [sys.executable, "-IS", str(CLIENT), DASK, *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_the_launcher_runs_the_jobs_command_in_its_cgroup_with_its_descriptors(tmp_path):
    service = Service(tmp_path)
    try:
        run = job_start(service.sock, "scheduler", "--version", cwd=tmp_path)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        # The child wrote to the wrapper's stdout (descriptors passed), and joined the cgroup.
        assert "version" in out.lower(), (out, err)
        assert "fresh" not in err
        child = (service.cgroup_root / "job_7" / "step_batch" / "cgroup.procs").read_text()
    finally:
        log = service.log()
    assert f"job 7: uid {os.getuid()} scheduler pid {child}" in log


def test_signals_reach_the_child_and_its_exit_code_comes_back(tmp_path):
    service = Service(tmp_path)
    sched_file = tmp_path / "scheduler.json"
    try:
        run = job_start(
            service.sock,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
            cwd=tmp_path,
        )
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert sched_file.exists(), run.stderr.read() if run.poll() is not None else "no scheduler file"
        # The scheduler is the launcher's child, not the wrapper's: a pre-imported fork.
        address = json.loads(sched_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=30) as client:
            pid, ppid = client.run_on_scheduler(lambda: (os.getpid(), os.getppid()))
        assert ppid == service.proc.pid and pid != run.pid
        run.send_signal(signal.SIGINT)  # as slurmstepd signals the batch step
        err = run.communicate(timeout=60)[1]
        assert run.returncode == 0, err
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        if run.poll() is None:
            run.kill()
        service.log()


def test_a_refused_request_starts_the_command_fresh_and_says_why(tmp_path):
    service = Service(tmp_path, mode="refuse")
    try:
        run = job_start(service.sock, "scheduler", "--version")
        out, err = run.communicate(timeout=60)
    finally:
        service.log()
    assert run.returncode == 0, err
    assert "version" in out.lower()
    assert "no pre-imported start (pid" in err and "not in a Slurm job's cgroup" in err and "fresh" in err


def test_without_the_launcher_the_command_starts_fresh(tmp_path):
    run = job_start(str(tmp_path / "absent.sock"), "worker", "--version")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0 and "version" in out.lower() and err == ""


def test_only_a_scheduler_or_a_worker(tmp_path):
    run = job_start(str(tmp_path / "absent.sock"), "ssh")
    err = run.communicate(timeout=30)[1]
    assert run.returncode == 2 and "usage: dask-job-start" in err
