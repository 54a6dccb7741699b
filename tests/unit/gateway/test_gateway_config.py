"""The settings file (from role variables) becomes the gateway's traitlets configuration."""

from __future__ import annotations

import json

from dataplatform_dask.gateway.config import configure
from traitlets.config import Config


def settings(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=\n")
    s = {
        "gateway": {
            "address": "0.0.0.0:8000",
            "tcp_address": "0.0.0.0:8786",
            "api_address": "127.0.0.1:8001",
            "tls_cert": "/etc/dask/tls/node.crt",
            "tls_key": "/etc/dask/tls/node.key",
            "db_url": "sqlite:////var/lib/dask-gateway/gateway.sqlite",
            "encrypt_keys_file": str(keys),
            "clusters_directory": "/var/lib/dask-gateway/clusters",
            "dask_command": "/opt/dask/venv-2026.8.0/bin/dask",
            "cluster_environment": {"DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "500ms"},
        },
        "auth": {
            "realm": "DATAPLATFORM.TEST",
            "uri": "ldap://x",
            "suffix": "dc=x",
            "bind_dn": "uid=s",
            "cache_ttl": 60,
        },
        "policy": {"idle_timeout": 7200, "fleet_cores": 16},
    }
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(s))
    return str(path)


def test_configure_pins_commands_state_and_tls(tmp_path):
    c = Config()
    configure(c, settings(tmp_path))
    assert c.ClusterConfig.scheduler_cmd == ["/opt/dask/venv-2026.8.0/bin/dask", "scheduler"]
    assert c.ClusterConfig.worker_cmd == ["/opt/dask/venv-2026.8.0/bin/dask", "worker"]
    assert c.ClusterConfig.idle_timeout == 7200
    assert c.ClusterConfig.environment == {"DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "500ms"}
    assert c.DaskGateway.address == "127.0.0.1:8001"  # fixed: clusters find the gateway again after a restart
    assert c.DaskGateway.authenticator_class == "dataplatform_dask.gateway.auth.FreeIPAAuthenticator"
    assert c.Proxy.tls_cert == "/etc/dask/tls/node.crt"
    b = c.PlatformLocalBackend
    assert b.stop_clusters_on_shutdown is False
    assert b.api_url == "http://127.0.0.1:8001/api"
    assert b.db_url.startswith("sqlite:////var/lib/dask-gateway/")
    assert b.db_encrypt_keys == ["a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="]
    assert c.FreeIPAAuthenticator.auth_settings["realm"] == "DATAPLATFORM.TEST"
    assert b.launcher == "zygote"
    assert b.launcher_dask_command == "/opt/dask/venv-2026.8.0/bin/dask"


def test_the_backend_accepts_the_configuration(tmp_path):
    from dataplatform_dask.gateway.backend import PlatformLocalBackend

    c = Config()
    configure(c, settings(tmp_path))
    b = PlatformLocalBackend(config=c)
    assert b.stop_clusters_on_shutdown is False
    assert b.policy.user_max_cores == 4
    assert b.clusters_directory == "/var/lib/dask-gateway/clusters"
    assert b.launcher == "zygote"


def test_the_stock_launch_is_one_setting_away(tmp_path):
    from dataplatform_dask.gateway.backend import PlatformLocalBackend

    path = settings(tmp_path)
    s = json.loads(open(path).read())
    s["gateway"]["launcher"] = "spawn"
    open(path, "w").write(json.dumps(s))
    c = Config()
    configure(c, path)
    assert PlatformLocalBackend(config=c).launcher == "spawn"


def slurm_settings(tmp_path, job_start="/usr/local/bin/dask-job-start"):
    path = settings(tmp_path)
    s = json.loads(open(path).read())
    s["gateway"].update(backend="slurm", api_url="https://gw.dataplatform.test:8000/api")
    s["slurm"] = {
        "launcher": "/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher",
        "bin_dir": "/usr/bin",
        "scheduler_partition": "schedulers",
        "worker_partition": "workers",
        "staging_directory": "{home}/.dask-gateway/",
        "start_timeout": 86400,
        "job_start": job_start,
    }
    open(path, "w").write(json.dumps(s))
    return path


def test_backend_slurm_combines_the_quotas_with_the_slurm_backend(tmp_path):
    from dataplatform_dask.gateway.backend import PolicyBackendMixin
    from dataplatform_dask.gateway.slurm_backend import FleetBackend, PlatformSlurmBackend

    c = Config()
    configure(c, slurm_settings(tmp_path))
    assert c.DaskGateway.backend_class == "dataplatform_dask.gateway.slurm_backend.FleetBackend"
    b = FleetBackend(config=c)
    assert isinstance(b, PolicyBackendMixin) and isinstance(b, PlatformSlurmBackend)
    assert b.policy.user_max_cores == 4  # the same quotas as the local backend
    # Schedulers on other hosts heartbeat to the public endpoint; the database stays on disk.
    assert b.api_url == "https://gw.dataplatform.test:8000/api"
    assert b.db_url == "sqlite:////var/lib/dask-gateway/gateway.sqlite"
    assert b.db_encrypt_keys == [b"a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="]
    assert b.stop_clusters_on_shutdown is False
    assert b.dask_gateway_jobqueue_launcher == "/opt/dask/gateway/bin/dask-gateway-jobqueue-launcher"
    assert (b.submit_command, b.status_command, b.cancel_command) == (
        "/usr/bin/sbatch",
        "/usr/bin/squeue",
        "/usr/bin/scancel",
    )
    assert b.cluster_start_timeout == b.worker_start_timeout == 86400
    config = b.cluster_config_class(parent=b)
    # Through the node's pre-imported launcher.
    job_start = "/usr/local/bin/dask-job-start"
    assert config.scheduler_cmd == [job_start, "/opt/dask/venv-2026.8.0/bin/dask", "scheduler"]
    assert config.worker_cmd == [job_start, "/opt/dask/venv-2026.8.0/bin/dask", "worker"]
    assert (config.scheduler_partition, config.worker_partition) == ("schedulers", "workers")
    assert config.staging_directory == "{home}/.dask-gateway/"
    assert config.environment == {"DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "500ms"}


def test_backend_slurm_without_the_job_launcher_runs_dask_itself(tmp_path):
    from dataplatform_dask.gateway.slurm_backend import FleetBackend

    c = Config()
    configure(c, slurm_settings(tmp_path, job_start=""))
    config = FleetBackend(config=c).cluster_config_class(parent=FleetBackend(config=c))
    assert config.scheduler_cmd == ["/opt/dask/venv-2026.8.0/bin/dask", "scheduler"]
    assert config.worker_cmd == ["/opt/dask/venv-2026.8.0/bin/dask", "worker"]


def test_an_unknown_backend_is_refused_with_the_choices(tmp_path):
    import pytest

    path = settings(tmp_path)
    s = json.loads(open(path).read())
    s["gateway"]["backend"] = "kubernetes"
    open(path, "w").write(json.dumps(s))
    with pytest.raises(ValueError, match=r"one of \['local', 'slurm'\]"):
        configure(Config(), path)
