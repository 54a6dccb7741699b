# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fork server's gateway front end: the local backend's pre-imported cluster starts.

The gateway's local backend (``dataplatform_dask.gateway.backend``) starts this process as root
(``dask-gateway-forkserver --fd N``) and talks to it over a socketpair: a UNIX socket with no
path, so nothing else can reach it. One JSON line per request, one per answer. The forking
itself (preload, request checks, taking the user's identity) is ``forkserver.core``; the Slurm
front end is ``forkserver.slurm_node``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import signal
import socket
import sys

from . import core


def serve(sock: socket.socket, dask_command: str, min_uid: int, allow_self: bool = False) -> None:
    """Answer requests on ``sock`` until it closes; reap children as SIGCHLD arrives."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C for the gateway is not for us
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    buf = b""
    try:
        while True:
            for key, _mask in sel.select():
                if key.data == "wake":
                    core.drain(wake_r)
                    core.reap()
                    continue
                try:
                    chunk = sock.recv(65536)
                except InterruptedError:  # pragma: no cover
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EINTR):  # pragma: no cover
                        continue
                    return
                if not chunk:
                    return
                buf += chunk
                if len(buf) > core.MAX_REQUEST:
                    return
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    answer = handle(line, dask_command, min_uid, allow_self, sock, wake_r, wake_w, sel.fileno())
                    sock.sendall(json.dumps(answer).encode() + b"\n")
            core.reap()
    finally:
        signal.set_wakeup_fd(-1)
        sel.close()
        os.close(wake_r)
        os.close(wake_w)


def handle(line: bytes, dask_command: str, min_uid: int, allow_self: bool, *close_fds) -> dict:
    try:
        req = core.validate(json.loads(line), dask_command, min_uid, allow_self)
    except (core.RequestError, ValueError) as exc:
        return {"error": str(exc)}
    try:
        return {"pid": core.spawn(req, [c.fileno() if hasattr(c, "fileno") else c for c in close_fds])}
    except OSError as exc:
        return {"error": f"fork failed: {exc}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fd", type=int, required=True, help="the socket shared with the backend")
    ap.add_argument("--dask-command", required=True, help="the dask command the backend asks for")
    ap.add_argument("--min-uid", type=int, default=1000)
    ap.add_argument("--allow-self", action="store_true", help="also run as the launcher's own user (benchmarks)")
    args = ap.parse_args(argv)
    core._prctl(core.PR_SET_PDEATHSIG, signal.SIGTERM)
    parent = os.getppid()
    for k, v in core.SINGLE_THREADED.items():
        os.environ.setdefault(k, v)
    sock = socket.socket(fileno=args.fd)
    missing = core.preload()
    if missing:
        print(f"dask-gateway-forkserver: could not preload {missing}", file=sys.stderr, flush=True)
    if os.getppid() != parent:  # the backend died while we were importing
        return 0
    sock.sendall(b'{"ready": true}\n')
    serve(sock, args.dask_command, args.min_uid, args.allow_self)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
