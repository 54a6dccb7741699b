"""asg_instance_protection: only named members, only differences, unknown ids refused before any change."""

from __future__ import annotations

import pytest
from asg_fixtures import GROUP, group, instance_ids, make_fleet, run_module

from ansible_collections.dataplatform.dask.plugins.module_utils.asg import AsgError
from ansible_collections.dataplatform.dask.plugins.modules import asg_instance_protection


def protection(client):
    return {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group(client)["Instances"]}


def test_compute_protection_changes_only_differences():
    instances = [
        {"instance_id": "i-1", "protected_from_scale_in": True},
        {"instance_id": "i-2", "protected_from_scale_in": False},
    ]
    to_change, after = asg_instance_protection.compute_protection(instances, ["i-1", "i-2"], True, GROUP)
    assert to_change == ["i-2"]
    assert [i["protected_from_scale_in"] for i in after] == [True, True]
    assert instances[1]["protected_from_scale_in"] is False  # the input is not modified


def test_compute_protection_names_unknown_ids():
    with pytest.raises(AsgError, match=r"i-404 are not in the group \(members: i-1\); no instance was changed"):
        asg_instance_protection.compute_protection(
            [{"instance_id": "i-1", "protected_from_scale_in": False}], ["i-1", "i-404"], True, GROUP
        )


@pytest.mark.parametrize("check", [True, False])
def test_protect_two_of_four(capsys, check):
    client, _ec2, _lt = make_fleet(size=4)
    ids = instance_ids(client)
    args = {"name": GROUP, "instance_ids": ids[:2], "protected": True}
    result = run_module(asg_instance_protection, args, capsys, check=check, diff=True)
    assert result["changed"] is True
    assert result["changed_ids"] == ids[:2]
    assert result["diff"] == {"before": dict.fromkeys(ids[:2], False), "after": dict.fromkeys(ids[:2], True)}
    expected = {i: (not check and i in ids[:2]) for i in ids}
    assert protection(client) == expected
    if not check:
        assert run_module(asg_instance_protection, args, capsys, check=True)["changed"] is False
        assert run_module(asg_instance_protection, args, capsys)["changed"] is False
        off = {"name": GROUP, "instance_ids": ids[:1], "protected": False}
        assert run_module(asg_instance_protection, off, capsys)["changed_ids"] == ids[:1]
        assert protection(client)[ids[0]] is False
        assert protection(client)[ids[1]] is True


def test_unknown_instance_id_fails_and_protects_nothing(capsys):
    client, _ec2, _lt = make_fleet(size=2)
    ids = instance_ids(client)
    result = run_module(
        asg_instance_protection,
        {"name": GROUP, "instance_ids": [ids[0], "i-0000000000000dead"], "protected": True},
        capsys,
    )
    assert result.failed
    assert "i-0000000000000dead" in result["msg"]
    assert f"ASG {GROUP}" in result["msg"]
    assert not any(protection(client).values())


def test_unknown_group(capsys):
    result = run_module(asg_instance_protection, {"name": "ghost", "instance_ids": ["i-1"], "protected": True}, capsys)
    assert result.failed
    assert "ASG ghost not found" in result["msg"]
