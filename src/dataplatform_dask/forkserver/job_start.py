# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dask-job-start: run ``<dask command> scheduler|worker ...`` in a Slurm job, pre-imported.

usage: dask-job-start /opt/dask/current/bin/dask scheduler|worker [ARGS...]

Asks the node's dask-job-launcher (dataplatform_dask.forkserver.slurm_node) to fork the command, already
imported, into this job's cgroup as this job's user, with this process's environment, directory,
umask and stdin/stdout/stderr; then waits for it, passes on the signals it receives, and exits
with its exit code. Where the service is not running, or refuses, the command starts fresh
(exec), as it would without this wrapper. Standard library only, started with -I -S: the wrapper
costs milliseconds.
"""

import array
import json
import os
import select
import signal
import socket
import sys

SOCKET = os.environ.get("DASK_JOB_LAUNCHER_SOCKET", "/run/dask-job-launcher/launcher.sock")
FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT)


def fresh(argv, why=""):
    """Start the command as a fresh process (replaces this one)."""
    if why:
        name = os.path.basename(argv[0])
        print(f"dask-job-start: {why}; starting {name} {argv[1]} fresh", file=sys.stderr, flush=True)
    os.execv(argv[0], argv)  # noqa: S606 - the job's own command line, as Slurm would run it


def ask(argv, path=SOCKET):
    """The pid the launcher forked for ``argv`` and the connection its exit code comes on."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.settimeout(30)
    conn.connect(path)
    umask = os.umask(0)
    os.umask(umask)
    msg = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask}
    conn.sendmsg([json.dumps(msg).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    answer = json.loads(conn.recv(65536) or b'{"error": "the launcher closed the connection"}')
    if "error" in answer:
        conn.close()
        raise PermissionError(answer["error"])
    return int(answer["pid"]), conn


def wait(pid, conn):
    """Until the child exits: its exit code, as a shell reports it (128 + signal)."""
    conn.settimeout(None)
    for sig in FORWARD:
        signal.signal(sig, lambda s, _f: _kill(pid, s))
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        pidfd = None  # an old kernel: poll the pid instead
    while True:
        watch = [conn] if pidfd is None else [conn, pidfd]
        ready = select.select(watch, [], [], None if pidfd is not None else 1.0)[0]
        if conn in ready:
            data = conn.recv(4096)
            if data:
                return _code(data)
            # The launcher went away (a restart): the child lives on; wait for it alone.
            if pidfd is not None:
                select.select([pidfd], [], [])
            else:
                _poll(pid)
            return 0
        if (pidfd is not None and pidfd in ready) or (pidfd is None and not _alive(pid)):
            # Exited: the launcher reaps it and reports its code within moments.
            ready = select.select([conn], [], [], 5)[0]
            data = conn.recv(4096) if ready else b""
            return _code(data) if data else 0


def _code(data):
    code = int(json.loads(data).get("exit", 1))
    return 128 - code if code < 0 else code


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _poll(pid):
    while _alive(pid):
        select.select([], [], [], 1.0)
    return 0


def main(argv):
    if len(argv) < 2 or argv[1] not in ("scheduler", "worker"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        pid, conn = ask(argv)
    except FileNotFoundError:
        fresh(argv)
    except (OSError, ValueError, KeyError) as exc:
        fresh(argv, f"no pre-imported start ({exc})")
    else:
        return wait(pid, conn)
    return 127  # not reached: fresh() replaced this process


def cli():
    """The console script (the roles' wrapper runs this file with ``python3 -IS`` instead)."""
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(cli())
