"""PlatformSlurmBackend: partitions per job kind, dask commands, long start timeouts, and the
pending reason and queue position a waiting user is shown (against a fake squeue)."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shlex
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from dataplatform_dask.gateway.slurm_backend import (
    DASK,
    PlatformSlurmBackend,
    PlatformSlurmClusterConfig,
    describe_pending,
    queue_positions,
    wait_for_scheduler_file,
)

ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def backend(monkeypatch):
    b = PlatformSlurmBackend()
    monkeypatch.setattr(b, "get_scheduler_command", lambda c: [*c.config.scheduler_cmd, "--protocol", "tls"])
    monkeypatch.setattr(b, "get_worker_command", lambda c, name: [*c.config.worker_cmd, "tls://s:1", "--name", name])
    monkeypatch.setattr(b, "get_scheduler_env", lambda c: {"DASK_GATEWAY_API_TOKEN": "t"})
    monkeypatch.setattr(b, "get_worker_env", lambda c: {"DASK_GATEWAY_API_TOKEN": "t"})
    return b


def cluster(**config):
    return SimpleNamespace(name="c1", username=ME, config=PlatformSlurmClusterConfig(**config), state={}, workers={})


def test_defaults_run_dask_commands_with_long_start_timeouts(backend):
    config = PlatformSlurmClusterConfig()
    assert config.scheduler_cmd == [DASK, "scheduler"]
    assert config.worker_cmd == [DASK, "worker"]
    assert (config.scheduler_partition, config.worker_partition) == ("schedulers", "workers")
    assert config.staging_directory == "{home}/.dask-gateway/"
    # A queued job must not be cancelled and resubmitted every minute.
    assert backend.cluster_start_timeout >= 3600
    assert backend.worker_start_timeout >= 3600
    assert backend.cluster_status_period <= 5


def test_scheduler_and_workers_go_to_their_own_partitions(backend):
    c = cluster()
    cmd, _env, script = backend.get_submit_cmd_env_stdin(c)
    assert "--partition=schedulers" in cmd
    assert "--job-name=dask-scheduler" in cmd
    assert f"{DASK} scheduler --protocol tls" in script
    cmd, _env, script = backend.get_submit_cmd_env_stdin(c, SimpleNamespace(name="w1"))
    assert "--partition=workers" in cmd
    assert not any(a == "--partition=schedulers" for a in cmd)
    assert "--job-name=dask-worker" in cmd
    assert f"{DASK} worker tls://s:1 --name w1" in script
    assert cmd[:2] == [backend.submit_command, "--parsable"]


def test_partitions_are_configurable(backend):
    cmd, _env, _script = backend.get_submit_cmd_env_stdin(cluster(scheduler_partition="sched2"))
    assert [a for a in cmd if a.startswith("--partition=")] == ["--partition=sched2"]


def test_queue_positions_follow_squeues_priority_order():
    assert queue_positions("17\n12\n\n30\n") == {"17": 1, "12": 2, "30": 3}


@pytest.mark.parametrize(
    ("reason", "position", "expected"),
    [
        ("Resources", 2, "waiting for Slurm: the fleet is full (Resources; position 2 in partition workers)"),
        (
            "Priority",
            5,
            "waiting for Slurm: higher-priority jobs are ahead (Priority; position 5 in partition workers)",
        ),
        (
            "QOSMaxCpuPerUserLimit",
            None,
            "waiting for Slurm: your clusters already use your CPU share (QOSMaxCpuPerUserLimit; partition workers)",
        ),
    ],
)
def test_pending_messages_name_slurms_reason(reason, position, expected):
    assert describe_pending(reason, position, "workers") == expected


FAKE_SQUEUE = """import sys
args = sys.argv[1:]
if "-t" in args:
    print("9\\n11\\n10")
else:
    print("10|PD|Resources|workers")
    print("11|PD|Priority|workers")
    print("12|R|None|schedulers")
"""


def test_check_jobs_keeps_reason_and_position_of_waiting_jobs(backend, tmp_path, caplog):
    fake = tmp_path / "squeue"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_SQUEUE)
    fake.chmod(0o755)
    backend.status_command = str(fake)
    states = asyncio.run(backend.check_jobs(["10", "11", "12", "13"]))
    assert states == {"10": True, "11": True, "12": True}  # 13 is gone: not alive
    assert backend.pending["10"]["position"] == 3
    assert backend.pending["11"]["reason"] == "Priority"
    assert "12" not in backend.pending
    c = cluster()
    c.state = {"job_id": "12"}
    c.workers = {"w1": SimpleNamespace(name="w1", state={"job_id": "10"})}
    report = backend.pending_report(c)
    assert report["job"] == "worker w1"
    assert report["message"] == "waiting for Slurm: the fleet is full (Resources; position 3 in partition workers)"
    # A worker that reported in is not waiting, even before the next poll says so.
    from dask_gateway_server.backends.db_base import JobStatus

    c.workers["w1"].status = JobStatus.RUNNING
    assert backend.pending_report(c) is None
    c.workers["w1"].status = JobStatus.SUBMITTED
    assert backend.pending_report(c)["job"] == "worker w1"
    # Once nothing waits any more, nothing is reported.
    fake.write_text(f"#!{sys.executable}\nprint('10|R|None|workers')\n")
    asyncio.run(backend.check_jobs(["10"]))
    assert backend.pending == {}
    assert backend.pending_report(c) is None


def test_jobs_slurm_forgot_are_dead_not_an_error(backend, tmp_path):
    fake = tmp_path / "squeue"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "print('slurm_load_jobs error: Invalid job id specified', file=sys.stderr)\nsys.exit(1)\n"
    )
    fake.chmod(0o755)
    backend.status_command = str(fake)
    assert asyncio.run(backend.check_jobs(["41"])) == {}


def test_other_squeue_failures_are_raised_with_the_reason(backend, tmp_path):
    fake = tmp_path / "squeue"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "print('squeue: error: Unable to contact slurm controller', file=sys.stderr)\nsys.exit(1)\n"
    )
    fake.chmod(0o755)
    backend.status_command = str(fake)
    with pytest.raises(RuntimeError, match="Unable to contact slurm controller"):
        asyncio.run(backend.check_jobs(["41"]))


def test_the_cluster_report_carries_the_reason_a_cluster_waits(tmp_path):
    from dask_gateway_server.models import Cluster, ClusterStatus
    from dataplatform_dask.gateway.backend import PolicyBackendMixin
    from dataplatform_dask.gateway.slurm_backend import PENDING_KEY, FleetBackend

    b = FleetBackend()
    assert isinstance(b, PolicyBackendMixin)
    fake = tmp_path / "squeue"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_SQUEUE)
    fake.chmod(0o755)
    b.status_command = str(fake)
    asyncio.run(b.check_jobs(["10", "11", "12"]))
    records = {
        "waits": SimpleNamespace(state={"job_id": "11"}, workers={}),
        "runs": SimpleNamespace(state={"job_id": "12"}, workers={}),
    }
    b.db = SimpleNamespace(get_cluster=records.get)
    options = {"worker_cores": 1}

    def model(name):
        return Cluster(name, ME, "tok", options, {}, ClusterStatus.PENDING)

    waiting = b.with_pending(model("waits"))
    pending = waiting.options[PENDING_KEY]
    assert pending["reason"] == "Priority"
    assert pending["message"].startswith("scheduler: waiting for Slurm: higher-priority jobs are ahead (Priority;")
    # What a stock client parses: the key rides in `options`, and the stored options are untouched.
    assert waiting.to_dict(full=False)["options"][PENDING_KEY]["job"] == "scheduler"
    assert options == {"worker_cores": 1}
    assert PENDING_KEY not in b.with_pending(model("runs")).options
    assert b.with_pending(None) is None


# -- clusters that start with workers: submitted with their scheduler ---------------------------


def real_cluster(count, scheduler_address=""):
    return SimpleNamespace(
        name="c1",
        username=ME,
        count=count,
        scheduler_address=scheduler_address,
        token="tok",
        config=PlatformSlurmClusterConfig(),
        state={},
        workers={},
    )


def test_a_cluster_with_workers_writes_a_scheduler_file_its_early_workers_read():
    from dataplatform_dask.gateway.slurm_backend import FleetBackend

    b = FleetBackend(api_url="https://gw/api")
    c = real_cluster(2)
    path = os.path.join(b.get_staging_directory(c), "scheduler.json")
    sched = b.get_scheduler_command(c)
    assert sched[-2:] == ["--scheduler-file", path]
    assert "dask_gateway.scheduler_preload" in sched and sched.count("--preload") == 2
    worker = b.get_worker_command(c, "w1")
    assert worker[2:4] == ["--scheduler-file", path] and "--name" in worker
    # Once the scheduler runs, later workers get its address; a cluster without workers, no file.
    assert b.get_worker_command(real_cluster(2, "tls://10.0.0.5:8786"), "w2")[2] == "tls://10.0.0.5:8786"
    assert "--scheduler-file" not in b.get_scheduler_command(real_cluster(0))
    _cmd, _env, script = b.get_submit_cmd_env_stdin(c)
    # The preload is Python text: quoted in the batch script, it reaches dask as one argument.
    last = script.splitlines()[-1]
    assert shlex.split(last) == sched


def test_an_early_worker_waits_for_the_scheduler_file_then_starts(tmp_path):
    path = tmp_path / "staging dir" / "scheduler.json"
    path.parent.mkdir()
    script = wait_for_scheduler_file(str(path)) + f"\ncat {shlex.quote(str(path))}\n"
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert proc.poll() is None  # no file yet: still waiting
    path.write_text('{"address": "tls://10.0.0.5:8786"}')
    out, _err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and json.loads(out)["address"] == "tls://10.0.0.5:8786"


def test_workers_of_a_cluster_that_starts_with_them_are_submitted_after_its_scheduler():
    from dask_gateway_server.backends.db_base import DataManager, JobStatus
    from dask_gateway_server.workqueue import WorkQueue

    b = PlatformSlurmBackend()
    b.db = DataManager()
    submitted = []

    async def start(cluster):
        submitted.append(("scheduler", cluster.count))
        yield {"job_id": "10", "staging_dir": "/x"}

    b.do_start_cluster = start

    async def main(count):
        b.queue = WorkQueue()
        c = b.db.create_cluster(ME, {}, PlatformSlurmClusterConfig().to_dict())
        if count:
            b.db.update_cluster(c, count=count)
        await b._cluster_to_submitted(c)
        queued = []
        while b.queue._queue:
            queued.append(await b.queue.get())
        return c, queued

    c, queued = asyncio.run(main(2))
    assert submitted == [("scheduler", 2)] and c.status == JobStatus.SUBMITTED
    assert sorted(w.name for w in queued) == sorted(c.workers) and len(c.workers) == 2
    assert all(w.status == JobStatus.CREATED and w.target == JobStatus.RUNNING for w in queued)
    c, queued = asyncio.run(main(0))
    assert not c.workers and not queued
