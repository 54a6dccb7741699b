# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-imported starts for the users' Dask jobs on a Slurm node (issue #9: new_cluster latency).

With backend slurm every scheduler and worker is a Slurm job, and a fresh ``dask scheduler`` or
``dask worker`` spends about a second of CPU importing distributed, dask, numpy, bokeh and the
gateway's preload before it does anything (twice for a worker: the nanny, then its worker
process). This service, one per Slurm node, imports all of that once (``core.preload``); the
job's batch script runs ``dask-job-start`` (``forkserver.job_start``), which
hands this service the job's command line, environment, working directory and stdin/stdout/stderr
over a UNIX socket. For each request a forked child takes the job's place:

* it joins the requesting process's cgroups (every hierarchy: cgroup v2, v1 or hybrid), which
  must include a Slurm job's (``.../job_<id>/...``), before it runs anything:
  Slurm's memory and CPU limits, accounting and ``scancel`` cover it as if slurmstepd had started
  it, and a job's end kills it;
* it takes the requester's identity as the kernel reports it (``SO_PEERCRED``: uid, gid; the
  supplementary groups and resource limits from ``/proc/<pid>``): a user can only start their own
  processes, never anyone else's, and never root's (uids below ``--min-uid`` are refused);
* it takes the requester's working directory, umask, environment and file descriptors 0-2.

Only ``<dask command> scheduler|worker`` runs (``core.validate``). A refused or failed request
leaves the job to start the command fresh (``dask-job-start`` falls back): never slower than
without this service, and never a different result.

The children must be what slurmstepd would have started, so the unit has no sandboxing that
children inherit (mount namespaces, NoNewPrivileges, a capability bounding set).
"""

from __future__ import annotations

import argparse
import array
import json
import os
import re
import resource
import selectors
import signal
import socket
import struct
import sys

from . import core

SOCKET = "/run/dask-job-launcher/launcher.sock"
MAX_REQUEST = 1 << 20
JOB_CGROUP = re.compile(r"/job_(\d+)(/|$)")
V1_CONTROLLERS = {
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "rdma",
    "misc",
}
# What the child copies from the requester (Slurm propagates the submitting user's limits).
LIMITS = [getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_") and n != "RLIMIT_NLIMITS"]
PR_SET_DUMPABLE = 4


# A request this service refuses; the message goes back to dask-job-start.
RequestError = core.RequestError


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process on the other end, as the kernel reports it."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def cgroup_mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[str, tuple[str, str]]:
    """{hierarchy: (mount point, mount root)}; the hierarchy is "" for cgroup v2 (unified), else
    its sorted controllers or name= (cgroup v1, or the v1 side of a hybrid host)."""
    out: dict[str, tuple[str, str]] = {}
    with open(mountinfo, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if "-" not in fields:
                continue
            sep = fields.index("-")
            fstype, superopts = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
            root, point = fields[3], fields[4]
            if fstype == "cgroup2":
                out.setdefault("", (point, root))
            elif fstype == "cgroup":
                opts = [o for o in superopts.split(",") if o in V1_CONTROLLERS or o.startswith("name=")]
                out.setdefault(",".join(sorted(opts)), (point, root))
    return out


def job_cgroup(pid: int, proc: str = "/proc", mounts: dict | None = None) -> tuple[list[str], str]:
    """(directories of every cgroup process ``pid`` is in, its Slurm job id).

    cgroup v2, v1 and hybrid hosts alike: the child joins each hierarchy's cgroup of the asking
    process. Refuses a process in no Slurm job's cgroup (``.../job_<id>/...``).
    """
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise RequestError(f"cannot read the cgroup of pid {pid}: {exc}") from None
    mounts = cgroup_mounts() if mounts is None else mounts
    dirs, jobs = [], set()
    for line in lines:
        _n, controllers, path = line.split(":", 2)
        if ".." in path.split("/"):
            raise RequestError(f"pid {pid}: refusing cgroup path {path}")
        match = JOB_CGROUP.search(path)
        if match:
            jobs.add(match.group(1))
        key = ",".join(sorted(c for c in controllers.split(",") if c))
        if key not in mounts:
            continue  # a hierarchy this host does not mount: nothing to join
        point, root = mounts[key]
        rel = path[len(root) :] if root != "/" and path.startswith(root) else path
        dirs.append(os.path.join(point, rel.lstrip("/")))
    if len(jobs) != 1:
        where = "; ".join(lines)
        raise RequestError(f"pid {pid} is not in a Slurm job's cgroup ({where})")
    return dirs, jobs.pop()


def join_cgroups(pid: int, dirs: list[str]) -> None:
    """Put process ``pid`` into each cgroup directory; a job's must take, others may fail."""
    for path in dirs:
        try:
            with open(os.path.join(path, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(str(pid))
        except OSError as exc:
            if JOB_CGROUP.search(path):
                raise RequestError(f"cannot join the job's cgroup {path}: {exc}") from None


def peer_groups(pid: int, proc: str = "/proc") -> list[int]:
    """The supplementary groups of process ``pid`` (what Slurm gave the job)."""
    with open(f"{proc}/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Groups:"):
                return [int(g) for g in line.split()[1:]]
    return []


def peer_limits(pid: int) -> list[tuple[int, tuple[int, int]]]:
    """The resource limits of process ``pid``."""
    out = []
    for res in LIMITS:
        try:
            out.append((res, resource.prlimit(pid, res)))
        except OSError:
            pass
    return out


def make_request(
    msg: dict,
    peer: tuple[int, int, int],
    fds: list[int],
    *,
    dask_command: str,
    min_uid: int,
    proc: str = "/proc",
    allow_self: bool = False,
    mounts: dict | None = None,
) -> dict:
    """The request a job sent, checked against what the kernel says about its sender."""
    pid, uid, gid = peer
    if len(fds) != 3:
        raise RequestError(f"expected stdin, stdout and stderr, got {len(fds)} descriptors")
    try:
        cwd, umask = str(msg["cwd"]), int(msg["umask"])
        env = {str(k): str(v) for k, v in msg["env"].items()}
        argv = [str(a) for a in msg["argv"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RequestError(f"malformed request: {exc!r}") from None
    if argv and argv[0] != dask_command and os.path.realpath(argv[0]) == os.path.realpath(dask_command):
        argv[0] = dask_command  # the same environment by another path (/opt/dask/current -> venv-X)
    cgroups, job_id = job_cgroup(pid, proc, mounts)
    if env.get("SLURM_JOB_ID", job_id) != job_id:
        raise RequestError(f"SLURM_JOB_ID {env['SLURM_JOB_ID']} is not the cgroup's job {job_id}")
    groups = peer_groups(pid, proc)
    req = core.validate(
        {"argv": argv, "env": env, "uid": uid, "gid": gid, "groups": groups, "cwd": cwd, "log": "/dev/null"},
        dask_command,
        min_uid,
        allow_self=allow_self,
    )
    req.update(cgroups=cgroups, job_id=job_id, fds=fds, umask=umask & 0o777, limits=peer_limits(pid), peer=pid)
    return req


def become_job(req: dict) -> None:
    """In the child (already in the job's cgroups): the job's limits, identity, descriptors,
    directory and environment."""
    os.setsid()
    for target, fd in enumerate(req["fds"]):
        os.dup2(fd, target)
    for fd in req["fds"]:
        if fd > 2:
            os.close(fd)
    for res, limit in req["limits"]:
        try:
            resource.setrlimit(res, limit)
        except (OSError, ValueError):
            pass
    if os.getuid() != req["uid"] or os.getgid() != req["gid"]:
        core.take_identity(req)
        # The user may inspect their own process (py-spy, /proc/self/io): it holds nothing of
        # root's but imported library code.
        core._prctl(PR_SET_DUMPABLE, 1)
    core.enter(req, req["umask"])


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    data, ancdata, _flags, _addr = conn.recvmsg(MAX_REQUEST, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    try:
        msg = json.loads(data)
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise RequestError("malformed request: not JSON") from None
    return msg, list(fds)


def _send(conn: socket.socket, answer: dict) -> None:
    try:
        conn.send(json.dumps(answer).encode())
    except OSError:
        pass


class Server:
    """The accept loop: one forked child per request; each exit is reported to its requester."""

    def __init__(self, listener, dask_command, min_uid, *, proc="/proc", allow_self=False, mounts=None):
        self.listener = listener
        self.dask_command, self.min_uid = dask_command, min_uid
        self.proc, self.allow_self = proc, allow_self
        self.mounts = cgroup_mounts() if mounts is None else mounts
        self.children: dict[int, socket.socket] = {}

    def handle(self, conn: socket.socket, close_fds: list[int]) -> None:
        fds: list[int] = []
        try:
            msg, fds = _recv_request(conn)
            req = make_request(
                msg,
                peer_credentials(conn),
                fds,
                dask_command=self.dask_command,
                min_uid=self.min_uid,
                proc=self.proc,
                allow_self=self.allow_self,
                mounts=self.mounts,
            )
            pid = self._fork(req, close_fds + [conn.fileno()] + [c.fileno() for c in self.children.values()])
        except (RequestError, OSError) as exc:
            _send(conn, {"error": str(exc)})
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        print(f"job {req['job_id']}: uid {req['uid']} {req['argv'][1]} pid {pid}", flush=True)
        self.children[pid] = conn
        _send(conn, {"pid": pid})

    def _fork(self, req: dict, close_fds: list[int]) -> int:
        """Fork the child, put it into the job's cgroups, then let it go; or kill it and refuse."""
        sys.stdout.flush()
        sys.stderr.flush()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid:
            os.close(go_r)
            try:
                join_cgroups(pid, req["cgroups"])
            except RequestError:
                os.close(go_w)  # the child exits without running anything
                os.waitpid(pid, 0)
                raise
            os.write(go_w, b"g")
            os.close(go_w)
            return pid

        def run() -> int:  # pragma: no cover - child
            go = os.read(go_r, 1)  # the parent has joined this process into the job's cgroups
            os.close(go_r)
            return core.run_child(req, become_job) if go == b"g" else 1

        core.child_main(run, [go_w, *close_fds], "dask-job-launcher")  # pragma: no cover - child
        return 0  # pragma: no cover - child_main never returns

    def reaped(self) -> None:
        for pid, status in core.reap():
            conn = self.children.pop(pid, None)
            if conn is not None:
                _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                conn.close()

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, "listen")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        try:
            while not stop:
                for key, _mask in sel.select():
                    if key.data == "wake":
                        core.drain(wake_r)
                        continue
                    try:
                        conn, _addr = self.listener.accept()
                    except OSError:
                        continue
                    conn.settimeout(5)
                    self.handle(conn, [self.listener.fileno(), wake_r, wake_w, sel.fileno()])
                self.reaped()
        finally:
            # The children live on in their jobs; only their exit reports are lost.
            signal.set_wakeup_fd(-1)
            sel.close()
            os.close(wake_r)
            os.close(wake_w)


def listen(path: str) -> socket.socket:
    """The service's socket: any local user may connect (the kernel tells who did)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.chmod(os.path.dirname(path), 0o755)  # noqa: S103 - whatever the umask, every job reaches the socket
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.bind(path)
    os.chmod(path, 0o666)  # noqa: S103 - any job may ask; SO_PEERCRED and its cgroup say who it is
    sock.listen(64)
    return sock


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", default=SOCKET)
    ap.add_argument("--dask-command", required=True, help="the dask command jobs may run")
    ap.add_argument("--min-uid", type=int, default=1000)
    args = ap.parse_args(argv)
    for k, v in core.SINGLE_THREADED.items():
        os.environ.setdefault(k, v)
    missing = core.preload()
    if missing:
        print(f"dask-job-launcher: could not preload {missing}", file=sys.stderr, flush=True)
    sock = listen(args.socket)
    print(f"dask-job-launcher: ready on {args.socket}", flush=True)
    Server(sock, args.dask_command, args.min_uid).serve()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
