#!/usr/bin/env bash
# `make demo` / `make demo-down`.
# Today: the fixed, TLS-only Dask cluster (1 scheduler + 2 workers in systemd containers)
# converged with playbooks/dask_cluster.yml, and a real computation run through it with the
# client bundle. The gateway, identity, EFS and moto parts join as their issues land.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$here/.cache/collections"
export DP_WHEELHOUSE="${DP_WHEELHOUSE:-$here/.cache/wheelhouse}"
phase() { echo; echo "==> $1"; phase_start=$(date +%s); }
done_phase() { echo "    done in $(( $(date +%s) - phase_start )) s"; }

case "${1:-up}" in
  up)
    scripts/dockerd.sh start
    phase "base images"; scripts/build-images.sh; done_phase
    phase "containers and converge (playbooks/dask_cluster.yml)"
    # A second `make demo` reuses running containers; stale state without them is cleared.
    if ! docker inspect dask-scheduler >/dev/null 2>&1; then
      molecule destroy -s cluster >/dev/null 2>&1 || true
    fi
    molecule create -s cluster >/dev/null
    molecule converge -s cluster | tail -12
    done_phase
    phase "a real Dask job over TLS with the client bundle"
    eph=$(ls -d "$HOME"/.ansible/tmp/molecule.*.cluster 2>/dev/null | head -1)
    bundle="$eph/dask-ca/clients/client"
    docker exec dask-scheduler mkdir -p /root/dask-client
    for f in ca.crt client.crt client.key; do docker cp "$bundle/$f" "dask-scheduler:/root/dask-client/$f"; done
    docker cp molecule/cluster/tests/dask_client_checks.py dask-scheduler:/root/dask-client/checks.py
    ip=$(docker exec dask-scheduler hostname -I | awk '{print $1}')
    docker exec dask-scheduler env -u DASK_CONFIG DASK_ROOT_CONFIG=/nonexistent \
      /opt/dask/current/bin/python /root/dask-client/checks.py compute "tls://$ip:8786" /root/dask-client
    done_phase
    echo
    echo "Scheduler:  tls://$ip:8786   dashboard: https://$ip:8787/status (CA: $bundle/ca.crt)"
    echo "Connect:    Client('tls://$ip:8786', security=Security(tls_ca_file='$bundle/ca.crt',"
    echo "              tls_client_cert='$bundle/client.crt', tls_client_key='$bundle/client.key', require_encryption=True))"
    echo "Tear down:  make demo-down"
    ;;
  down)
    molecule destroy -s cluster >/dev/null 2>&1 || true
    docker network rm molecule >/dev/null 2>&1 || true
    scripts/dockerd.sh stop
    echo "demo removed"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
