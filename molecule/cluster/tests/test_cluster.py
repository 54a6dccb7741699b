"""Behaviour of the fixed cluster: real computations over TLS, refusal without a
certificate, self-healing after kill -9 and scheduler restarts, graceful retirement.

Run by the `platform` scenario (make test: its scheduler and workers, beside the gateway) and by
`cluster` (the fixed cluster alone, for make bench and a quick loop on the Dask roles): the
hosts are the scenario inventory's dask_scheduler and dask_worker groups."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.peers.molecule_inventory import group as inventory_group


SCHEDULER = inventory_group("dask_scheduler")[0]
WORKERS = inventory_group("dask_worker")
CLIENT_HOST = SCHEDULER  # any container with the venv; the client uses its own bundle
BUNDLE = "/root/dask-client"
# The client must use only its bundle: keep it from reading the node's /etc/dask config.
PY = "env -u DASK_CONFIG DASK_ROOT_CONFIG=/nonexistent /opt/dask/current/bin/python"
HERE = Path(__file__).resolve().parent


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=300)


def sh(host: str, cmd: str, check: bool = True) -> str:
    return docker("exec", host, "sh", "-c", cmd, check=check).stdout.strip()


@pytest.fixture(scope="module")
def address() -> str:
    ca_dir = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "dask-ca" / "clients" / "client"
    sh(CLIENT_HOST, f"rm -rf {BUNDLE} && mkdir -p {BUNDLE}")
    for name in ("ca.crt", "client.crt", "client.key"):
        docker("cp", str(ca_dir / name), f"{CLIENT_HOST}:{BUNDLE}/{name}")
    docker("cp", str(HERE / "dask_client_checks.py"), f"{CLIENT_HOST}:{BUNDLE}/checks.py")
    ip = sh(SCHEDULER, "hostname -I | awk '{print $1}'")
    return f"tls://{ip}:8786"


def client(action: str, *args: str) -> dict:
    out = sh(CLIENT_HOST, f"cd /tmp && {PY} {BUNDLE}/checks.py {action} " + " ".join(args))
    return json.loads(out.splitlines()[-1])


def wait_workers(address: str, since: float, timeout: float) -> dict:
    return client("wait-workers", address, BUNDLE, ",".join(WORKERS), str(since), str(timeout))


def test_units_are_hardened_and_running() -> None:
    for host, unit in [(SCHEDULER, "dask-scheduler"), *[(w, "dask-worker") for w in WORKERS]]:
        assert sh(host, f"systemctl is-active {unit}") == "active"
        props = sh(host, f"systemctl show {unit} -p User -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p Restart")
        assert "User=dask" in props
        assert "NoNewPrivileges=yes" in props
        assert "ProtectSystem=strict" in props
        assert "PrivateTmp=yes" in props
        assert "Restart=always" in props
        assert sh(host, "stat -c '%a %U' /etc/dask/tls/node.key") == "600 dask"


def test_computation_runs_on_both_workers(address: str) -> None:
    result = client("compute", address, BUNDLE)
    assert result["array_sum"] == result["array_expected"]
    assert result["shuffle_ok"] is True
    assert result["shuffle_groups"] == 97
    assert sorted(result["workers"]) == WORKERS
    assert set(result["workers_used"]) == set(WORKERS), result


def test_client_without_certificate_is_refused(address: str) -> None:
    result = client("nocert", address, BUNDLE)
    assert result["refused"] is True, result


def test_plain_tcp_is_refused() -> None:
    ip = sh(SCHEDULER, "hostname -I | awk '{print $1}'")
    out = sh(
        CLIENT_HOST,
        f'cd /tmp && DASK_CONFIG=/nonexistent {PY} -c "from distributed import Client; '
        f"Client('tcp://{ip}:8786', timeout=5)\" 2>&1; echo rc=$?",
        check=False,
    )
    assert "rc=0" not in out


def test_metrics_served_over_https() -> None:
    out = sh(SCHEDULER, "curl -sf --cacert /etc/dask/tls/ca.crt https://$(hostname -I | awk '{print $1}'):8787/metrics")
    assert "dask_scheduler_workers" in out


def test_stop_retires_gracefully_and_keeps_every_key(address: str) -> None:
    victim = WORKERS[0]
    before = client("persist", address, BUNDLE, victim)
    assert before["on_victim"] > 0, before
    sh(victim, "systemctl stop dask-worker")
    try:
        after = client("check", address, BUNDLE, victim)
        assert after["retrieved"] == before["keys"], (before, after)
        assert after["sum"] == before["expected_sum"]
        assert after["on_victim"] == 0
        assert victim not in after["workers"]
        journal = sh(victim, "journalctl -u dask-worker --no-pager -n 50")
        assert "retired" in journal
    finally:
        sh(victim, "systemctl start dask-worker")
    assert wait_workers(address, time.time(), 30)["ok"]


def test_kill_9_worker_is_restarted_and_registers_within_10s(address: str) -> None:
    victim = WORKERS[1]
    restarts = int(sh(victim, "systemctl show -p NRestarts --value dask-worker"))
    since = time.time()
    sh(victim, "kill -9 $(systemctl show -p MainPID --value dask-worker)")
    result = wait_workers(address, since, 10)
    assert result["ok"], result
    assert result["elapsed"] <= 10, result
    assert int(sh(victim, "systemctl show -p NRestarts --value dask-worker")) > restarts


def test_workers_reregister_within_30s_after_scheduler_restart(address: str) -> None:
    since = time.time()
    sh(SCHEDULER, "systemctl restart dask-scheduler")
    result = wait_workers(address, since, 30)
    assert result["ok"], result
    assert result["elapsed"] <= 30, result
    # and the cluster computes again
    assert client("compute", address, BUNDLE)["shuffle_ok"] is True
