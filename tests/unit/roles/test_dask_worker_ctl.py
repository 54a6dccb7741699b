"""dask-worker-ctl (dataplatform_dask.node.worker_ctl): where a worker finds its scheduler, and which
workers it retires."""

from __future__ import annotations

import pytest
from dataplatform_dask.node import worker_ctl as ctl


@pytest.fixture
def confdir(tmp_path, monkeypatch):
    monkeypatch.setattr(ctl, "ADDRESS_FILE", str(tmp_path / "scheduler-address"))
    monkeypatch.setattr(ctl, "DISCOVERY_FILE", str(tmp_path / "discovery.env"))
    return tmp_path


def test_environment_wins(confdir):
    (confdir / "scheduler-address").write_text("tls://10.0.0.2:8786\n")
    assert ctl.resolve_address({"DASK_SCHEDULER_ADDRESS": "tls://10.0.0.1:8786"}) == (
        "tls://10.0.0.1:8786",
        "DASK_SCHEDULER_ADDRESS",
    )


def test_address_file_skips_comments_and_blank_lines(confdir):
    (confdir / "scheduler-address").write_text("# written by user data\n\n tls://sched.internal:8786 \n")
    address, source = ctl.resolve_address({})
    assert address == "tls://sched.internal:8786"
    assert source.endswith("scheduler-address")


def test_ssm_parameter_is_read_when_no_file(confdir, monkeypatch):
    (confdir / "discovery.env").write_text("DASK_SCHEDULER_SSM_PARAMETER=/dask/prod/scheduler\nAWS_REGION=eu-west-1\n")
    calls = []

    def fake_ssm(parameter, region):
        calls.append((parameter, region))
        return "tls://10.1.2.3:8786"

    monkeypatch.setattr(ctl, "ssm_address", fake_ssm)
    assert ctl.resolve_address({}) == ("tls://10.1.2.3:8786", "SSM parameter /dask/prod/scheduler")
    assert calls == [("/dask/prod/scheduler", "eu-west-1")]


def test_ssm_failure_is_not_yet(confdir, monkeypatch):
    (confdir / "discovery.env").write_text("DASK_SCHEDULER_SSM_PARAMETER=/dask/prod/scheduler\n")

    def broken(parameter, region):
        raise RuntimeError("ParameterNotFound")

    monkeypatch.setattr(ctl, "ssm_address", broken)
    with pytest.raises(ctl.NoAddress, match="ParameterNotFound"):
        ctl.resolve_address({})


def test_nothing_configured_names_every_way_to_fix_it(confdir):
    with pytest.raises(ctl.NoAddress) as err:
        ctl.resolve_address({})
    message = str(err.value)
    assert "DASK_SCHEDULER_ADDRESS" in message
    assert "scheduler-address" in message
    assert "DASK_SCHEDULER_SSM_PARAMETER" in message


@pytest.mark.parametrize(
    "bad", ["10.0.0.1:8786", "http://10.0.0.1:8786", "tls://10.0.0.1", "tls://host:port", "tls://a b:1"]
)
def test_malformed_address_is_refused(confdir, bad):
    with pytest.raises(ctl.NoAddress, match="not a tls://host:port"):
        ctl.resolve_address({"DASK_SCHEDULER_ADDRESS": bad})


def test_launch_without_address_asks_systemd_to_retry(confdir, capsys):
    assert ctl.launch(["--nthreads", "2"]) == 75
    assert "no scheduler address" in capsys.readouterr().err


def test_launch_execs_dask_worker_with_the_address(confdir, monkeypatch):
    (confdir / "scheduler-address").write_text("tls://10.0.0.9:8786\n")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    seen = {}

    def fake_execv(path, argv):
        seen["path"], seen["argv"] = path, argv
        raise SystemExit(0)

    monkeypatch.setattr(ctl.os, "execv", fake_execv)
    with pytest.raises(SystemExit):
        ctl.main(["launch", "--", "--nthreads", "2", "--name", "w1"])
    assert seen["path"].endswith("/dask")
    assert seen["argv"][1:] == ["worker", "tls://10.0.0.9:8786", "--nthreads", "2", "--name", "w1"]


def test_my_workers_matches_name_and_numbered_siblings_only():
    info = {
        "workers": {
            "tls://10.0.0.1:8788": {"name": "worker-a"},
            "tls://10.0.0.1:8790": {"name": "worker-a-1"},
            "tls://10.0.0.2:8788": {"name": "worker-ab"},
            "tls://10.0.0.3:8788": {"name": "worker-b"},
        }
    }
    assert sorted(ctl.my_workers(info, "worker-a")) == ["tls://10.0.0.1:8788", "tls://10.0.0.1:8790"]
    assert ctl.my_workers(info, "worker-c") == []


def test_retire_without_address_is_a_clean_stop(confdir):
    assert ctl.retire("worker-a", 5) == 0
