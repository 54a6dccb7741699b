"""slurm_sacctmgr against a fake sacctmgr: idempotent, check mode changes nothing, diff, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dataplatform.dask.plugins.module_utils import slurm
from ansible_collections.dataplatform.dask.plugins.modules import slurm_sacctmgr

FAKE = Path(__file__).resolve().parent / "fake_sacctmgr.py"


@pytest.fixture
def sacctmgr(tmp_path, monkeypatch):
    """Path of a fake sacctmgr with its own state; ``calls()`` lists the mutating calls made."""
    state = tmp_path / "state.json"
    monkeypatch.setenv("FAKE_SACCTMGR_STATE", str(state))
    wrapper = tmp_path / "sacctmgr"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    wrapper.chmod(0o755)

    class Fake:
        path = str(wrapper)

        @staticmethod
        def calls():
            log = Path(str(state) + ".log")
            lines = log.read_text().splitlines() if log.exists() else []
            return [line for line in lines if "--immediate" in line]

        @staticmethod
        def state():
            return json.loads(state.read_text())

    return Fake


def run(args, capsys, sacctmgr, check=False, diff=False):
    full = dict({"sacctmgr_path": sacctmgr.path}, **args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(full), pytest.raises(SystemExit):
        slurm_sacctmgr.main()
    return json.loads(capsys.readouterr().out)


QOS = {
    "entity": "qos",
    "name": "analysts",
    "priority": 50,
    "flags": ["DenyOnLimit"],
    "max_tres_per_user": {"cpu": 10, "mem": "20G"},
    "max_tres_per_job": {"cpu": 4, "mem": "8192M"},
}
ACCOUNT = {
    "entity": "account",
    "name": "data_analysts",
    "cluster": "molecule",
    "description": "FreeIPA group data_analysts",
    "fairshare": 1,
    "qos": ["analysts"],
    "default_qos": "analysts",
}
USER = {"entity": "user", "name": "alice", "account": "data_analysts", "cluster": "molecule"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("cpu=4,mem=8G", {"cpu": "4", "mem": "8192"}),
        ("mem=8192M", {"mem": "8192"}),
        ("mem=1T,node=2", {"mem": "1048576", "node": "2"}),
        ("mem=512", {"mem": "512"}),
    ],
)
def test_parse_tres_normalises_memory_to_mb(text, expected):
    assert slurm.parse_tres(text) == expected


@pytest.mark.parametrize("bad", ["cpu", "cpu=four", "mem=lots"])
def test_parse_tres_names_the_bad_value(bad):
    with pytest.raises(slurm.SlurmError, match="TRES"):
        slurm.parse_tres(bad)


def test_format_tres_clears_keys_no_longer_wanted():
    assert slurm.format_tres({"cpu": "4"}, {"cpu": "2", "mem": "8192"}) == "cpu=4,mem=-1"


def four_runs(args, capsys, sacctmgr):
    """check, apply, check again, apply again: changed, changed, unchanged, unchanged."""
    before = len(sacctmgr.calls())
    first_check = run(args, capsys, sacctmgr, check=True, diff=True)
    assert first_check["changed"] is True
    assert len(sacctmgr.calls()) == before  # check mode ran no mutating command
    applied = run(args, capsys, sacctmgr, diff=True)
    assert applied["changed"] is True
    assert applied["entity"] == first_check["entity"]  # check mode predicted the result
    made = len(sacctmgr.calls())
    assert run(args, capsys, sacctmgr, check=True)["changed"] is False
    again = run(args, capsys, sacctmgr)
    assert again["changed"] is False
    assert len(sacctmgr.calls()) == made
    return applied


def test_qos_created_with_limits_then_idempotent(capsys, sacctmgr):
    applied = four_runs(QOS, capsys, sacctmgr)
    qos = sacctmgr.state()["qos"]["analysts"]
    assert qos["priority"] == 50
    assert qos["flags"] == ["DenyOnLimit"]
    assert qos["maxtrespu"] == {"cpu": "10", "mem": "20480"}
    assert qos["maxtres"] == {"cpu": "4", "mem": "8192"}
    assert applied["diff"]["before"] == {}
    assert applied["diff"]["after"]["max_tres_per_job"] == {"cpu": "4", "mem": "8192"}


def test_qos_limit_key_dropped_is_cleared(capsys, sacctmgr):
    run(QOS, capsys, sacctmgr)
    result = run(dict(QOS, max_tres_per_user={"cpu": 12}), capsys, sacctmgr, diff=True)
    assert result["changed"] is True
    assert result["diff"]["before"]["max_tres_per_user"] == {"cpu": "10", "mem": "20480"}
    assert sacctmgr.state()["qos"]["analysts"]["maxtrespu"] == {"cpu": "12"}
    assert "MaxTRESPerUser=cpu=12,mem=-1" in sacctmgr.calls()[-1]


def test_account_and_user_association(capsys, sacctmgr):
    run(QOS, capsys, sacctmgr)
    four_runs(ACCOUNT, capsys, sacctmgr)
    assoc = next(a for a in sacctmgr.state()["assocs"] if a["account"] == "data_analysts" and not a["user"])
    assert assoc["qos"] == ["analysts"]
    assert assoc["defaultqos"] == "analysts"
    applied = four_runs(USER, capsys, sacctmgr)
    assert applied["entity"]["qos"] == ["analysts"]  # inherited from the account
    assert any(a["user"] == "alice" for a in sacctmgr.state()["assocs"])


def test_operator_admin_level(capsys, sacctmgr):
    gateway = {
        "entity": "user",
        "name": "dask-gateway",
        "account": "root",
        "cluster": "molecule",
        "admin_level": "Operator",
    }
    four_runs(gateway, capsys, sacctmgr)
    assert sacctmgr.state()["users"]["dask-gateway"]["adminlevel"] == "Operator"


def test_absent_removes_then_is_a_no_op(capsys, sacctmgr):
    run(QOS, capsys, sacctmgr)
    gone = {"entity": "qos", "name": "analysts", "state": "absent"}
    assert run(gone, capsys, sacctmgr, check=True)["changed"] is True
    assert "analysts" in sacctmgr.state()["qos"]
    assert run(gone, capsys, sacctmgr)["changed"] is True
    assert "analysts" not in sacctmgr.state()["qos"]
    assert run(gone, capsys, sacctmgr)["changed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(QOS, fairshare=2), "fairshare do not apply to entity=qos"),
        ({"entity": "account", "name": "x"}, "set cluster"),
        ({"entity": "user", "name": "alice", "cluster": "molecule"}, "set account"),
        (dict(ACCOUNT, default_qos="engineers"), "default_qos engineers is not in qos"),
        (dict(QOS, max_tres_per_job={"cpu": "four"}), "max_tres_per_job: TRES cpu=four is not a whole number"),
    ],
)
def test_bad_input_fails_before_any_call(capsys, sacctmgr, args, message):
    result = run(args, capsys, sacctmgr)
    assert result["failed"] is True
    assert message in result["msg"]
    assert sacctmgr.calls() == []


def test_user_in_a_missing_account_is_refused_before_any_change(capsys, sacctmgr):
    result = run(dict(USER, account="no_such_account"), capsys, sacctmgr)
    assert result["failed"] is True
    assert result["msg"] == (
        "add user alice to account no_such_account: the account does not exist in cluster molecule; "
        "create it first (entity=account)"
    )
    assert sacctmgr.calls() == []


def test_sacctmgr_error_names_the_action(capsys, sacctmgr):
    failing = sacctmgr.path + "-failing"
    Path(failing).write_text(
        "#!/bin/sh\necho 'sacctmgr: error: Problem talking to the database: Connection refused' >&2\nexit 1\n"
    )
    Path(failing).chmod(0o755)
    result = run(dict(QOS, sacctmgr_path=failing), capsys, sacctmgr)
    assert result["failed"] is True
    assert result["msg"] == (
        "read qos analysts: sacctmgr failed: sacctmgr: error: Problem talking to the database: Connection refused"
    )
