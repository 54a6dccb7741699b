# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fork server's core ("zygote"): pre-imported starts of the users' schedulers and workers.

Starting ``dask scheduler`` or ``dask worker`` as a fresh process imports distributed, dask,
numpy, bokeh and the gateway's preload: about a second of CPU each, before the process does any
work, and most of the time a new cluster takes on a small host. This process imports all of
that once, then for each request forks a child that takes the user's identity
(``setgroups(getgrouplist)``, ``setgid``, ``setuid``), its working directory, environment and
log file, and runs the scheduler or worker command line in-process.

Two front ends serve it: ``forkserver.gateway`` (the gateway's local backend, over a socketpair)
and ``forkserver.slurm_node`` (a Slurm node's service, for the jobs' ``dask-job-start``).
It stays single-threaded (BLAS pools are capped at one thread before numpy loads) so that
forking is safe, reaps its children as soon as they exit (the backend polls pids with
``kill(pid, 0)``, which a zombie would pass), and exits when the backend closes the socket or
dies (``PR_SET_PDEATHSIG``); the clusters it started live on, as with the stock launch.
"""

from __future__ import annotations

import os
import signal
import sys

# What a child may run: the subcommand of the configured ``dask`` command and its entry point.
ENTRY_POINTS = {
    "scheduler": ("distributed.cli.dask_scheduler", "main"),
    "worker": ("distributed.cli.dask_worker", "main"),
}
# Imported once here, so that children start with them loaded.
PRELOAD = (
    "distributed",
    "distributed.cli.dask_scheduler",
    "distributed.cli.dask_worker",
    "dask_gateway.scheduler_preload",
    "distributed.dashboard.scheduler",
    "distributed.dashboard.worker",
    "distributed.http.scheduler.prometheus",
    "distributed.http.worker.prometheus",
)
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
MAX_REQUEST = 1 << 20


class RequestError(Exception):
    """A request the launcher refuses; the message goes back to the backend."""


def preload(modules=PRELOAD) -> list[str]:
    """Import what the children need; returns the modules that could not be imported."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def validate(req: dict, dask_command: str, min_uid: int, allow_self: bool = False) -> dict:
    """The request, checked: the configured dask command, a known subcommand, a user's uid
    (or, with ``allow_self``, the launcher's own identity: benchmarks and tests)."""
    try:
        argv = [str(a) for a in req["argv"]]
        env = {str(k): str(v) for k, v in req["env"].items()}
        uid, gid = int(req["uid"]), int(req["gid"])
        groups = [int(g) for g in req["groups"]]
        cwd, log = str(req["cwd"]), str(req["log"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RequestError(f"malformed request: {exc!r}") from None
    if len(argv) < 2 or argv[0] != dask_command or argv[1] not in ENTRY_POINTS:
        raise RequestError(f"refusing to run {argv[:2]}: only {dask_command} {'/'.join(ENTRY_POINTS)}")
    if not (allow_self and uid == os.getuid() and gid == os.getgid()):
        if uid < min_uid or gid == 0:
            raise RequestError(f"refusing uid {uid} / gid {gid}: clusters run only for uids >= {min_uid}")
        if 0 in groups:
            raise RequestError("refusing supplementary group 0")
    if not os.path.isabs(cwd) or not os.path.isabs(log):
        raise RequestError("cwd and log must be absolute paths")
    return {"argv": argv, "env": env, "uid": uid, "gid": gid, "groups": groups, "cwd": cwd, "log": log}


def _prctl(option: int, arg) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def become(req: dict) -> None:
    """In the child: the user's session, identity, directory, files and environment."""
    os.setsid()
    log_fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    if os.getuid() == req["uid"] and os.getgid() == req["gid"]:
        pass  # already the user (allow_self)
    elif os.getuid() == 0:
        os.fchown(1, req["uid"], req["gid"])
        take_identity(req)
    elif os.getuid() != req["uid"]:
        raise RuntimeError(f"not root: cannot run as uid {req['uid']}")
    enter(req, 0o077)


def take_identity(req: dict) -> None:
    """In a child running as root: become ``req``'s uid, gid and supplementary groups, checked."""
    os.setgroups(req["groups"])
    os.setgid(req["gid"])
    os.setuid(req["uid"])
    if os.getuid() != req["uid"] or os.geteuid() != req["uid"]:  # pragma: no cover
        raise RuntimeError("setuid did not take")


def enter(req: dict, umask: int) -> None:
    """In a child with its identity: umask, working directory, environment and process name."""
    os.umask(umask)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    if req["argv"][1] == "worker":
        # The nanny's worker process: forked from this pre-imported nanny, not a fresh interpreter.
        os.environ.setdefault("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", "fork")
    _prctl(PR_SET_NAME, f"dask-{req['argv'][1]}".encode()[:15])


def refresh_dask_config() -> None:
    """Re-read Dask's configuration for the child's HOME, DASK_CONFIG and DASK_* variables."""
    import dask.config

    dask.config.paths[:] = dask.config._get_paths()
    dask.config.PATH = os.environ.get("DASK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "dask")
    dask.config.refresh()
    if "distributed.config" in sys.modules:
        # Logging as distributed's import would set it up from this configuration.
        import logging

        for lg in list(logging.Logger.manager.loggerDict.values()):
            if isinstance(lg, logging.Logger) and lg.handlers:
                lg.handlers.clear()
                lg.propagate = True
        sys.modules["distributed.config"].initialize_logging(dask.config.config)


def run_child(req: dict, become_fn=None) -> int:  # pragma: no cover - a forked child's; the tests fork it
    """In the child: take the request's identity (``become_fn``, default ``become``) and run the
    scheduler or worker command line in-process; returns its exit code."""
    import importlib

    # The signal dispositions of a fresh Python: SIGPIPE and SIGXFSZ ignored (a write to a closed
    # socket is an error, not death), SIGINT a KeyboardInterrupt, the rest the defaults.
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    (become_fn or become)(req)
    refresh_dask_config()
    module, attr = ENTRY_POINTS[req["argv"][1]]
    main = getattr(importlib.import_module(module), attr)
    sys.argv = [f"{req['argv'][0]} {req['argv'][1]}", *req["argv"][2:]]
    try:
        main.main(args=req["argv"][2:], prog_name=sys.argv[0], standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        return 0
    return 0


def spawn(req: dict, close_fds) -> int:
    """Fork a child for one request; returns its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    child_main(lambda: run_child(req), close_fds, "dataplatform_dask.forkserver.gateway")  # pragma: no cover
    return 0  # pragma: no cover - child_main never returns


def child_main(run, close_fds, name: str) -> None:  # pragma: no cover - a forked child's
    """In a forked child: close the parent's descriptors, run ``run()`` and exit with its code
    (1 if it raised, the exception on stderr under ``name``); never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        code = run()
    except BaseException as exc:
        try:
            os.write(2, f"{name}: {exc!r}\n".encode())
        except OSError:
            pass
    finally:
        try:
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def drain(fd: int) -> None:
    """Empty a non-blocking wake-up pipe (signals written by ``signal.set_wakeup_fd``)."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def reap() -> list[tuple[int, int]]:
    """Collect every child that has exited: (pid, status)."""
    done = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, status))
