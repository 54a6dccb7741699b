"""The pre-imported launcher: requests are checked, children run the real dask scheduler and
worker with the identity, directory, environment and log asked for, and are reaped on exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dataplatform_dask.forkserver import core

DASK = str(Path(sys.executable).parent / "dask")
SCHEDULER = [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]


def request(**kw):
    req = {
        "argv": [DASK, "scheduler"],
        "env": {},
        "uid": 1500,
        "gid": 1500,
        "groups": [1500, 70001],
        "cwd": "/var/lib/dask-gateway/clusters/c1",
        "log": "/var/lib/dask-gateway/clusters/c1/logs/scheduler.log",
    }
    req.update(kw)
    return req


def test_a_users_scheduler_or_worker_is_accepted():
    assert core.validate(request(), DASK, 1000)["uid"] == 1500
    assert core.validate(request(argv=[DASK, "worker", "tls://x:1"]), DASK, 1000)["argv"][1] == "worker"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"argv": ["/bin/sh", "-c", "id"]}, "refusing to run"),
        ({"argv": [DASK, "ssh"]}, "refusing to run"),
        ({"argv": [DASK]}, "refusing to run"),
        ({"uid": 0, "gid": 0}, "refusing uid 0"),
        ({"uid": 999}, "uids >= 1000"),
        ({"gid": 0}, "gid 0"),
        ({"groups": [1500, 0]}, "supplementary group 0"),
        ({"cwd": "relative"}, "absolute"),
        ({"uid": "x"}, "malformed"),
    ],
)
def test_anything_else_is_refused(change, reason):
    with pytest.raises(core.RequestError, match=reason):
        core.validate(request(**change), DASK, 1000)


def test_a_missing_field_is_malformed():
    req = request()
    del req["env"]
    with pytest.raises(core.RequestError, match="malformed"):
        core.validate(req, DASK, 1000)


def test_own_identity_only_when_allowed():
    me = request(uid=os.getuid(), gid=os.getgid(), groups=[0])
    if os.getuid() < 1000:
        with pytest.raises(core.RequestError):
            core.validate(me, DASK, 1000)
    assert core.validate(me, DASK, 1000, allow_self=True)["uid"] == os.getuid()


class Launcher:
    """The launcher as the backend runs it: a child on one end of a socketpair."""

    def __init__(self, *extra):
        self.sock, child = socket.socketpair()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dataplatform_dask.forkserver.gateway",
                "--fd",
                str(child.fileno()),
                "--dask-command",
                DASK,
                *extra,
            ],
            pass_fds=[child.fileno()],
        )
        child.close()
        self.file = self.sock.makefile("rwb")
        assert json.loads(self.file.readline()) == {"ready": True}

    def ask(self, req) -> dict:
        self.file.write(json.dumps(req).encode() + b"\n")
        self.file.flush()
        return json.loads(self.file.readline())

    def close(self):
        self.file.close()
        self.sock.close()
        return self.proc.wait(30)


def gone(pid: int, timeout: float = 30) -> bool:
    """True once pid no longer exists: exited AND reaped (a zombie still answers kill(pid, 0))."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert path.exists(), f"{path} never appeared"


def test_a_scheduler_and_a_worker_from_the_launcher_compute(tmp_path):
    from distributed import Client

    zygote = Launcher("--allow-self")
    me = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": str(tmp_path)}
    sched_file = tmp_path / "scheduler.json"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": "False",
        "DASK_DISTRIBUTED__ADMIN__LOG_FORMAT": "from-the-child %(name)s %(message)s",
    }
    try:
        refused = zygote.ask(request(argv=["/bin/true", "scheduler"]))
        assert "refusing to run" in refused["error"]
        sched = zygote.ask(
            dict(
                me,
                argv=[*SCHEDULER, "--scheduler-file", str(sched_file)],
                env=env,
                log=str(tmp_path / "scheduler.log"),
            )
        )["pid"]
        wait_for(sched_file)
        address = json.loads(sched_file.read_text())["address"]
        worker = zygote.ask(
            dict(
                me,
                argv=[DASK, "worker", address, "--nthreads", "1", "--no-dashboard", "--name", "w1"],
                env=env,
                log=str(tmp_path / "worker-w1.log"),
            )
        )["pid"]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
            # The child took the environment asked for: the scheduler read its Dask config from it.
            stealing = client.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.extensions.get("stealing") is not None
            )
            assert stealing is False
            info = client.run_on_scheduler(lambda: (os.getcwd(), os.environ.get("HOME"), os.getpid(), os.getsid(0)))
            assert list(info[:3]) == [str(tmp_path), str(tmp_path), sched]
            assert info[3] == sched  # its own session
        # Logging follows the child's configuration, once (no handler left over from the launcher).
        lines = [ln for ln in (tmp_path / "scheduler.log").read_text().splitlines() if "Scheduler at" in ln]
        assert len(lines) == 1 and lines[0].startswith("from-the-child distributed.scheduler")
        assert (tmp_path / "scheduler.log").stat().st_mode & 0o777 == 0o600
        # Stopped the way the backend stops them: a signal to the pid; the launcher reaps them.
        for pid in (worker, sched):
            os.kill(pid, signal.SIGINT)
        assert gone(worker) and gone(sched)
    finally:
        for pid in ("worker", "sched"):
            try:
                os.kill(locals()[pid], signal.SIGKILL)
            except (KeyError, ProcessLookupError):
                pass
        assert zygote.close() == 0  # it exits when the backend's end of the socket closes


@pytest.fixture
def shared_dir():
    """A directory another user can enter (pytest's tmp_path sits below a 0700 directory)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="dp-launcher-", dir="/tmp"))
    path.chmod(0o777)
    shutil.copy(Path(__file__).parent / "data" / "whoami_preload.py", path / "whoami_preload.py")
    (path / "whoami_preload.py").chmod(0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.getuid() != 0, reason="changing identity needs root")
def test_the_child_takes_the_users_identity(shared_dir):
    import pwd

    nobody = pwd.getpwnam("nobody")
    tmp_path = shared_dir
    out = tmp_path / "out"
    zygote = Launcher("--min-uid", str(nobody.pw_uid))
    try:
        pid = zygote.ask(
            {
                "argv": [*SCHEDULER, "--preload", str(tmp_path / "whoami_preload.py")],
                "env": {"WHOAMI_OUT": str(out), "PATH": os.environ["PATH"]},
                "uid": nobody.pw_uid,
                "gid": nobody.pw_gid,
                "groups": [nobody.pw_gid, 4242],
                "cwd": str(tmp_path),
                "log": str(tmp_path / "scheduler.log"),
            }
        )["pid"]
        wait_for(out)
        assert json.loads(out.read_text()) == {
            "uid": nobody.pw_uid,
            "euid": nobody.pw_uid,
            "gid": nobody.pw_gid,
            "groups": sorted({nobody.pw_gid, 4242}),
            "umask": 0o077,
        }
        assert (tmp_path / "scheduler.log").stat().st_uid == nobody.pw_uid
        os.kill(pid, signal.SIGTERM)
        assert gone(pid)
    finally:
        zygote.close()


# -- the backend side ------------------------------------------------------------------------


def self_backend(**kw):
    from dask_gateway_server.backends.local import UnsafeLocalBackend
    from dataplatform_dask.gateway.backend import LauncherMixin

    class SelfBackend(LauncherMixin, UnsafeLocalBackend):
        def launch_identity(self, cluster):
            return os.getuid(), os.getgid(), os.getgroups()

    return SelfBackend(launcher_allow_self=True, launcher_dask_command=DASK, **kw)


def fake_cluster(tmp_path):
    from types import SimpleNamespace

    (tmp_path / "logs").mkdir(exist_ok=True)
    return SimpleNamespace(name="c1", username="alice", state={"workdir": str(tmp_path)})


def test_spawn_and_other_commands_take_the_stock_path(tmp_path, monkeypatch):
    import asyncio

    from dask_gateway_server.backends.local import LocalBackend

    calls = []

    async def stock(self, cluster, cmd, env, name):
        calls.append(cmd)
        return 4242

    monkeypatch.setattr(LocalBackend, "start_process", stock)
    b = self_backend(launcher="spawn")
    assert asyncio.run(b.start_process(fake_cluster(tmp_path), [DASK, "scheduler"], {}, "scheduler")) == 4242
    b = self_backend()
    assert asyncio.run(b.start_process(fake_cluster(tmp_path), ["/usr/bin/other", "scheduler"], {}, "s")) == 4242
    assert getattr(b, "_dp_zygote", None) is None  # no launcher was started for them
    assert calls == [[DASK, "scheduler"], ["/usr/bin/other", "scheduler"]]


def test_the_backend_restarts_a_launcher_that_died(tmp_path):
    import asyncio

    b = self_backend()
    cluster = fake_cluster(tmp_path)
    cmd = SCHEDULER
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    async def main():
        await b._zygote_start()
        first = b._dp_zygote[0]
        one = await b.start_process(cluster, cmd, env, "scheduler-1")
        first.kill()
        await first.wait()
        two = await b.start_process(cluster, cmd, env, "scheduler-2")
        second = b._dp_zygote[0]
        await b._zygote_stop()
        return first, second, one, two

    first, second, one, two = asyncio.run(main())
    try:
        assert first.pid != second.pid
        assert second.returncode == 0  # it left when its socket closed
        for name in ("scheduler-1", "scheduler-2"):
            wait_for(tmp_path / "logs" / f"{name}.log")
        # Its children outlive it, as with the stock launch (the gateway's restarts keep clusters).
        for pid in (one, two):
            os.kill(pid, 0)
    finally:
        for pid in (one, two):
            os.kill(pid, signal.SIGKILL)
    # The first launcher died before reaping: its orphans go to init, which reaps them.
    assert gone(one) and gone(two)
