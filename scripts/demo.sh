#!/usr/bin/env bash
# `make demo` / `make demo-down`: the whole platform on this machine (molecule/platform).
#
#   containers  platform-scheduler, platform-worker1/2, platform-gateway (systemd, Debian 12)
#   peers       identity (MIT KDC, 389-ds, FreeIPA JSON-RPC) and AWS (moto) on the host
#   converge    ansible-playbook playbooks/site.yml against them (Molecule's converge)
#   job         a FreeIPA user logs in to the gateway, starts a cluster and runs a groupby over
#               parquet data on the shared file system
#
# A second `make demo` reuses the running containers and peers and runs site.yml again
# (nothing changes). `make demo-down` removes everything the demo started.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$here/.cache/collections"
export DP_WHEELHOUSE="${DP_WHEELHOUSE:-$here/.cache/wheelhouse}"
export DP_MOTO_PORT="${DP_MOTO_PORT:-15011}"
scenario=platform
demo_user=${DEMO_USER:-alice}
demo_password=${DEMO_PASSWORD:-Alice-Secret123}
total_start=$(date +%s)
phase() { echo; echo "==> $1"; phase_start=$(date +%s); }
done_phase() { echo "    done in $(($(date +%s) - phase_start)) s"; }
# Molecule's output is long: keep it in a log, show its end when a step fails.
logdir="$here/.cache/platform"
mkdir -p "$logdir"
quiet() {
  local log="$logdir/$1.log"
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -40 "$log"
    echo "!! $* failed: the whole output is in $log" >&2
    exit 1
  fi
}
lock() { flock /tmp/dataplatform-molecule.lock "$@"; }

case "${1:-up}" in
  up)
    scripts/dockerd.sh start
    phase "base images (Debian 12/13, built once)"
    scripts/build-images.sh
    done_phase

    phase "containers: scheduler, 2 workers, gateway"
    if ! docker inspect platform-gateway >/dev/null 2>&1; then
      # Molecule's state may remember containers that are gone: start clean.
      quiet destroy lock molecule destroy -s "$scenario"
    fi
    quiet create lock molecule create -s "$scenario"
    docker ps --filter "label=dataplatform.scenario=$scenario" --format '    {{.Names}}  {{.Status}}'
    done_phase

    phase "peers: identity (KDC, 389-ds, FreeIPA API) and AWS (moto) on the host"
    quiet prepare lock molecule prepare -s "$scenario" --force
    done_phase

    phase "ansible-playbook playbooks/site.yml"
    quiet converge lock molecule converge -s "$scenario"
    # The last PLAY RECAP: one line per host with its changed count.
    sed -e 's/\x1b\[[0-9;]*m//g' "$logdir/converge.log" |
      grep -E '^[^a-z]*[a-z0-9.-]+ +: ok=[0-9]+ +changed=' | sed -e 's/^[^a-z]*/    /' -e 's/ *unreachable.*//'
    done_phase

    phase "as $demo_user: log in to the gateway, start a cluster, groupby over parquet on EFS"
    # In the user's own Unix session on a client host, as a data engineer would run it.
    docker cp molecule/platform/tests/demo_job.py platform-gateway:/root/demo_job.py
    docker exec platform-gateway install -m 0644 /root/demo_job.py /usr/local/share/demo_job.py
    out=$(docker exec -e DEMO_PASSWORD="$demo_password" -w /tmp platform-gateway \
      runuser -u "$demo_user" -- /opt/dask/current/bin/python /usr/local/share/demo_job.py "$demo_user")
    result=$(tail -1 <<<"$out")
    python3 - "$result" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
print(f"    cluster {r['cluster']} (scheduler uid {r['scheduler_uid_gid'][0]}), {r['files']} parquet files in {r['path']}")
print(f"    groupby('name').x.agg(['count', 'mean']) over {r['rows']:,} rows, {r['groups']} groups; top 5:")
for name, v in r["top5"].items():
    print(f"      {name:<10} count={v['count']:>6}  mean={v['mean']:+.6f}")
print(f"    checked against pandas: {'identical' if r['matches_pandas'] else 'DIFFERENT'}")
t = r["timings"]
print("    timings: " + ", ".join(f"{k.removesuffix('_s')} {v} s" for k, v in t.items()))
EOF
    done_phase

    gw=$(docker exec platform-gateway hostname -I | awk '{print $1}')
    cat <<EOF

The platform is up ($(($(date +%s) - total_start)) s in all).
  Gateway:    https://platform-gateway.dataplatform.test:8000  (container address $gw)
  Dashboard:  each cluster's is behind the gateway's login, e.g.
              https://platform-gateway.dataplatform.test:8000/clusters/<cluster name>/status
  Users:      alice (data_engineers), bob (data_analysts), dave (admins), carol (no platform
              group: refused); passwords <Name>-Secret123.
  Connect from a Python session, as alice on a client host (site.yml wrote gateway.yaml and
  put the gateway's CA in the trust store):
    docker exec -it platform-gateway su - alice
    $ kinit                                  # Alice-Secret123
    $ /opt/dask/current/bin/python
    >>> from dask_gateway import Gateway
    >>> gateway = Gateway()                  # Kerberos; or Gateway(auth=BasicAuth(user, password))
    >>> cluster = gateway.new_cluster(); cluster.scale(2); client = cluster.get_client()
  Tear down:  make demo-down
EOF
    ;;
  down)
    if docker info >/dev/null 2>&1; then
      lock molecule destroy -s "$scenario" >/dev/null 2>&1 || true
      docker volume rm dataplatform-platform-efs >/dev/null 2>&1 || true
      # The shared network goes only when no other scenario's container is on it.
      if [ -z "$(docker ps -aq --filter network=molecule)" ]; then
        docker network rm molecule >/dev/null 2>&1 || true
      fi
    fi
    .venv/bin/python tests/peers/moto_peer.py stop || true
    if [ -z "$(docker ps -aq --filter label=owner=molecule 2>/dev/null)" ]; then
      .venv/bin/python tests/peers/identity.py stop >/dev/null 2>&1 || true
      scripts/dockerd.sh stop
    fi
    echo "demo removed"
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
