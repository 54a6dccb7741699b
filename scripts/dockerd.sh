#!/usr/bin/env bash
# Start dockerd in the background when no daemon answers (these machines have no
# systemd as PID 1), or stop the one this checkout started.
#   scripts/dockerd.sh start   -> prints nothing, exits 0 once `docker info` works
#   scripts/dockerd.sh stop    -> stops dockerd only if its PID file is ours
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
state="${DP_STATE_DIR:-$here/.cache}"
pidfile="$state/dockerd.pid"
mkdir -p "$state"

case "${1:-start}" in
  start)
    if docker info >/dev/null 2>&1; then exit 0; fi
    command -v dockerd >/dev/null || { echo "dockerd not installed: run scripts/bootstrap-host.sh" >&2; exit 1; }
    echo "==> starting dockerd (log: $state/dockerd.log)"
    # Containers need a cgroup v2 host mount and no userland proxy surprises.
    nohup dockerd --host=unix:///var/run/docker.sock >"$state/dockerd.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && exit 0
      sleep 1
    done
    echo "dockerd did not answer within 60 s; see $state/dockerd.log" >&2
    exit 1
    ;;
  stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      echo "==> stopping dockerd (pid $pid) started by this checkout"
      kill "$pid"
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
