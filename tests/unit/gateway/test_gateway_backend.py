"""The LocalBackend fixes (working directory ownership, sssd groups) and the quota mixin's atomicity."""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
from types import SimpleNamespace

import pytest
from dask_gateway_server.backends.base import Backend, PublicException
from dask_gateway_server.backends.local import LocalBackend
from dask_gateway_server.models import ClusterStatus
from dataplatform_dask.gateway import backend as backend_mod
from dataplatform_dask.gateway.auth import PlatformUser
from dataplatform_dask.gateway.backend import PlatformLocalBackend, PolicyBackendMixin, user_identity
from dataplatform_dask.gateway.policy import CURRENT_USER

ME = pwd.getpwuid(os.getuid())


def cluster(tmp_path, name="c1", username=ME.pw_name):
    return SimpleNamespace(name=name, username=username, tls_cert=b"CERT", tls_key=b"KEY", state={})


# -- working directory ---------------------------------------------------------------------


def test_stock_backend_chowns_the_characters_of_a_path(tmp_path, monkeypatch):
    # The upstream bug this role works around: paths.extend(path) adds "/", "t", "m", "p"...
    calls = []
    monkeypatch.setattr("dask_gateway_server.backends.local.getpwnam", lambda u: ME)
    monkeypatch.setattr(os, "chown", lambda p, *a, **k: calls.append(p))
    stock = LocalBackend(clusters_directory=str(tmp_path))
    stock.setup_working_directory(cluster(tmp_path))
    assert "/" in calls


def test_working_directory_belongs_to_the_user_and_nothing_else_is_chowned(tmp_path, monkeypatch):
    calls = []
    real_chown = os.chown
    monkeypatch.setattr(
        os, "chown", lambda p, uid, gid, **k: (calls.append((p, uid, gid)), real_chown(p, uid, gid, **k))
    )
    b = PlatformLocalBackend(clusters_directory=str(tmp_path))
    workdir = b.setup_working_directory(cluster(tmp_path))
    assert workdir == str(tmp_path / "c1")
    assert {call[0] for call in calls} == {
        workdir,
        f"{workdir}/.certs",
        f"{workdir}/logs",
        f"{workdir}/.certs/dask.crt",
        f"{workdir}/.certs/dask.pem",
    }
    assert all((uid, gid) == (ME.pw_uid, ME.pw_gid) for _path, uid, gid in calls)
    # The directories go last: root owns the tree until it is complete.
    assert calls[-1][0] == workdir
    for d in (workdir, f"{workdir}/.certs", f"{workdir}/logs"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    key = f"{workdir}/.certs/dask.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert open(key, "rb").read() == b"KEY"


def test_a_symlink_planted_as_the_key_is_not_followed(tmp_path):
    b = PlatformLocalBackend(clusters_directory=str(tmp_path))
    (tmp_path / "c1" / ".certs").mkdir(parents=True)
    target = tmp_path / "victim"
    target.write_text("keep")
    os.symlink(target, tmp_path / "c1" / ".certs" / "dask.crt")
    with pytest.raises(OSError):
        b.setup_working_directory(cluster(tmp_path))
    assert target.read_text() == "keep"


def test_no_clusters_directory_is_an_error(tmp_path):
    with pytest.raises(PublicException):
        PlatformLocalBackend().setup_working_directory(cluster(tmp_path))


# -- identity: getgrouplist, system accounts ------------------------------------------------


def fake_pw(name, uid, gid):
    return pwd.struct_passwd((name, "x", uid, gid, "", f"/home/{name}", "/bin/bash"))


def test_supplementary_groups_come_from_getgrouplist(monkeypatch):
    monkeypatch.setattr(backend_mod.pwd, "getpwnam", lambda n: fake_pw(n, 1500, 1500))
    monkeypatch.setattr(backend_mod.os, "getgrouplist", lambda n, gid: [gid, 70001, 70002])
    pw, groups = user_identity("alice")
    assert pw.pw_uid == 1500
    assert groups == [1500, 70001, 70002]


@pytest.mark.parametrize(("uid", "msg"), [(0, "system account"), (999, "system account")])
def test_system_accounts_get_no_cluster(monkeypatch, uid, msg):
    monkeypatch.setattr(backend_mod.pwd, "getpwnam", lambda n: fake_pw(n, uid, uid))
    with pytest.raises(PublicException, match=msg):
        user_identity("root")


def test_unknown_user_is_explained():
    with pytest.raises(PublicException, match="no Unix account"):
        user_identity("no-such-user-dataplatform")


def test_preexec_drops_to_the_user_with_all_groups(monkeypatch):
    calls = []
    monkeypatch.setattr(backend_mod.pwd, "getpwnam", lambda n: fake_pw(n, 1500, 1600))
    monkeypatch.setattr(backend_mod.os, "getgrouplist", lambda n, gid: [1600, 70001])
    for f in ("setgroups", "setgid", "setuid", "umask", "chdir"):
        monkeypatch.setattr(backend_mod.os, f, lambda arg, f=f: calls.append((f, arg)))
    b = PlatformLocalBackend()
    preexec = b.make_preexec_fn(SimpleNamespace(username="alice", state={"workdir": "/w"}))
    assert calls == []
    preexec()
    assert calls == [
        ("setgroups", [1600, 70001]),
        ("setgid", 1600),
        ("setuid", 1500),
        ("umask", 0o077),
        ("chdir", "/w"),
    ]


def test_a_failed_setgroups_stops_the_launch(monkeypatch):
    monkeypatch.setattr(backend_mod.pwd, "getpwnam", lambda n: fake_pw(n, 1500, 1600))
    monkeypatch.setattr(backend_mod.os, "getgrouplist", lambda n, gid: [1600])

    def refuse(groups):
        raise PermissionError("not root")

    monkeypatch.setattr(backend_mod.os, "setgroups", refuse)
    preexec = PlatformLocalBackend().make_preexec_fn(SimpleNamespace(username="alice", state={"workdir": "/w"}))
    with pytest.raises(PermissionError):
        preexec()


# -- the quota mixin, on a fake backend --------------------------------------------------------


class FakeBackend(Backend):
    """Just enough of a backend: clusters in a dict; every call yields to the loop."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.clusters = {}
        self.sent = []

    async def list_clusters(self, username=None, statuses=None):
        await asyncio.sleep(0)
        return [c for c in self.clusters.values() if username is None or c.username == username]

    async def get_cluster(self, cluster_name, wait=False):
        return self.clusters.get(cluster_name)

    async def start_cluster(self, user, cluster_options):
        _options, config = await self.process_cluster_options(user, cluster_options)
        await asyncio.sleep(0.01)
        name = f"{user.name}-{len(self.clusters)}"
        self.clusters[name] = SimpleNamespace(
            name=name, username=user.name, config=config.to_dict(), status=ClusterStatus.RUNNING
        )
        return name

    async def forward_message_to_scheduler(self, cluster, msg):
        await asyncio.sleep(0)
        self.sent.append((cluster.name, msg))

    async def on_cluster_heartbeat(self, cluster_name, msg):
        self.sent.append((cluster_name, msg))


class QuotaBackend(PolicyBackendMixin, FakeBackend):
    pass


SETTINGS = {"fleet_cores": 16, "max_clusters_per_user": 2}
ALICE = PlatformUser("alice", ["data_engineers"])
BOB = PlatformUser("bob", ["data_analysts"])
DAVE = PlatformUser("dave", ["admins"], admin=True)


def test_concurrent_cluster_requests_never_exceed_the_per_user_count():
    b = QuotaBackend(policy_settings=SETTINGS)

    async def main():
        return await asyncio.gather(*(b.start_cluster(ALICE, {}) for _i in range(10)), return_exceptions=True)

    results = asyncio.run(main())
    ok = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, PublicException)]
    assert len(ok) == 2
    assert len(refused) == 8
    assert all("quota is 2 clusters per user" in str(r) for r in refused)


def test_concurrent_scale_requests_never_exceed_the_core_share():
    b = QuotaBackend(policy_settings=dict(SETTINGS, fleet_cores=24))  # 6 cores for alice

    async def main():
        c1 = b.clusters[await b.start_cluster(ALICE, {})]
        c2 = b.clusters[await b.start_cluster(ALICE, {})]
        # Each asks for 3 workers (1 scheduler + 3 = 4 cores, 8 for both > 6): one must lose.
        return await asyncio.gather(
            b.forward_message_to_scheduler(c1, {"op": "scale", "count": 3}),
            b.forward_message_to_scheduler(c2, {"op": "scale", "count": 3}),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    assert sum(r is None for r in results) == 1
    (err,) = [r for r in results if isinstance(r, PublicException)]
    assert "quota is 6 cores per user (25% of the 24-core fleet)" in str(err)
    assert "at most 1 workers" in str(err)


def test_concurrent_scale_requests_never_exceed_the_memory_share():
    # Cores to spare (100), but 10 GB for alice: each cluster is a 1 GB scheduler + 2 GB workers.
    b = QuotaBackend(policy_settings=dict(SETTINGS, fleet_cores=400, fleet_memory_gb=40))

    async def main():
        c1 = b.clusters[await b.start_cluster(ALICE, {})]
        c2 = b.clusters[await b.start_cluster(ALICE, {})]
        # 3 workers each: 7 GB per cluster, 14 GB for both > 10 GB: one must lose.
        results = await asyncio.gather(
            b.forward_message_to_scheduler(c1, {"op": "scale", "count": 3}),
            b.forward_message_to_scheduler(c2, {"op": "scale", "count": 3}),
            return_exceptions=True,
        )
        return results, (await b._usage("alice"))[1]

    results, held = asyncio.run(main())
    assert sum(r is None for r in results) == 1
    (err,) = [r for r in results if isinstance(r, PublicException)]
    assert "GB of memory; the quota is 10 GB per user (25% of the 40 GB fleet)" in str(err)
    assert "at most 1 workers" in str(err)
    assert held.memory_gb <= 10


def test_a_new_cluster_past_the_memory_share_is_refused():
    b = QuotaBackend(policy_settings=dict(SETTINGS, fleet_cores=400, fleet_memory_gb=32, max_clusters_per_user=5))

    async def main():
        c1 = b.clusters[await b.start_cluster(ALICE, {})]
        await b.forward_message_to_scheduler(c1, {"op": "scale", "count": 3})  # 1 + 3 x 2 = 7 GB of 8
        await b.start_cluster(ALICE, {})  # a second scheduler: 8 GB
        return await b.start_cluster(ALICE, {})

    with pytest.raises(PublicException, match=r"would use 9 GB of memory; the quota is 8 GB per user"):
        asyncio.run(main())


def test_a_group_quota_refusal_reaches_the_user():
    b = QuotaBackend(policy_settings=SETTINGS)
    with pytest.raises(PublicException, match="data_analysts quota of 1 cores per worker"):
        asyncio.run(b.start_cluster(BOB, {"worker_cores": 2}))


def test_adaptive_maximum_is_capped_by_the_core_share():
    b = QuotaBackend(policy_settings=SETTINGS)

    async def main():
        c = b.clusters[await b.start_cluster(ALICE, {})]
        await b.forward_message_to_scheduler(c, {"op": "adapt", "minimum": 5, "maximum": 10})

    asyncio.run(main())
    assert b.sent[-1][1] == {"op": "adapt", "minimum": 3, "maximum": 3}


def test_heartbeat_counts_past_the_share_are_capped():
    b = QuotaBackend(policy_settings=SETTINGS)

    async def main():
        name = await b.start_cluster(ALICE, {})
        await b.on_cluster_heartbeat(name, {"count": 9})
        return name

    name = asyncio.run(main())
    assert b.sent[-1] == (name, {"count": 3})


def test_admins_list_everyone_and_users_only_their_own():
    b = QuotaBackend(policy_settings=SETTINGS)

    async def main(user):
        CURRENT_USER.set(user)
        return sorted(c.username for c in await b.list_clusters(username=user.name))

    asyncio.run(b.start_cluster(ALICE, {}))
    asyncio.run(b.start_cluster(BOB, {}))
    assert asyncio.run(main(ALICE)) == ["alice"]
    assert asyncio.run(main(DAVE)) == ["alice", "bob"]


def test_home_is_the_users_home_once_it_exists(tmp_path):
    home = tmp_path / "home" / "alice"
    pw = SimpleNamespace(pw_dir=str(home))
    assert backend_mod.user_home(pw, "/var/lib/dask-gateway/clusters/c1") == "/var/lib/dask-gateway/clusters/c1"
    home.mkdir(parents=True)
    assert backend_mod.user_home(pw, "/var/lib/dask-gateway/clusters/c1") == str(home)


# -- clusters that start with workers -------------------------------------------------------


class UpstreamCommandBackend(FakeBackend):
    def get_scheduler_command(self, cluster):
        return ["dask", "scheduler", "--preload", backend_mod.UPSTREAM_PRELOAD, "--dg-idle-timeout", "7200"]


class SeededBackend(PolicyBackendMixin, UpstreamCommandBackend):
    """The fake backend with the database record a db backend seeds, and upstream's command."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.counts = {}
        self.db = SimpleNamespace(get_cluster=lambda name: name, update_cluster=self._update)

    def _update(self, record, **kw):
        self.counts[record] = kw["count"]


def test_a_cluster_started_with_workers_holds_them_in_the_users_share():
    b = SeededBackend(policy_settings=dict(SETTINGS, fleet_cores=24))  # 6 cores for alice

    async def main():
        first = await b.start_cluster(ALICE, {"workers": 3})  # 1 + 3 cores
        try:
            await b.start_cluster(ALICE, {"workers": 2})  # 1 + 2 more: 7 > 6
        except PublicException as exc:
            return first, exc
        raise AssertionError("the second cluster was not refused")

    first, exc = asyncio.run(main())
    assert b.counts == {first: 3}  # the record's target: workers created as the scheduler runs
    assert b._targets[first] == 3
    assert str(exc).startswith("workers=2: ") and "quota is 6 cores per user" in str(exc)
    assert "at most 1 workers" in str(exc)
    assert len(b.clusters) == 1  # refused before anything was created


def test_more_workers_than_one_cluster_may_have_are_refused_with_its_limit():
    b = SeededBackend(policy_settings=dict(SETTINGS, fleet_cores=400, fleet_memory_gb=400))
    # data_engineers: 4 cores / 8 GB per cluster; a 1-core scheduler leaves 3 one-core workers.
    with pytest.raises(PublicException, match=r"workers=4 exceeds the 3 workers one cluster may have \(4 cores / 8 GB"):
        asyncio.run(b.start_cluster(ALICE, {"workers": 4}))
    with pytest.raises(PublicException, match="workers"):
        asyncio.run(b.start_cluster(ALICE, {"workers": -1}))
    assert not b.clusters and not b.counts
    assert asyncio.run(b.start_cluster(ALICE, {})) and not b.counts  # no workers asked: no seed


def test_the_scheduler_starts_with_its_first_target_right_after_upstreams_preload():
    b = SeededBackend(policy_settings=SETTINGS)
    cmd = b.get_scheduler_command(SimpleNamespace(count=2))
    at = cmd.index(backend_mod.UPSTREAM_PRELOAD)
    assert cmd[at + 1 : at + 3] == ["--preload", backend_mod.count_preload(2)]
    assert cmd[at + 3 :] == ["--dg-idle-timeout", "7200"]
    assert "--preload" not in b.get_scheduler_command(SimpleNamespace(count=0))[at + 1 :]


def test_distributed_runs_the_count_preload_as_a_script_after_upstreams():
    from distributed.preloading import process_preloads

    service = SimpleNamespace(count=0)
    scheduler = SimpleNamespace(services={"gateway": service})
    asyncio.run(process_preloads(scheduler, [backend_mod.count_preload(3)], ["--dg-idle-timeout", "7200"]).start())
    assert service.count == 3
    service.count = 5  # a later target is never lowered
    asyncio.run(process_preloads(scheduler, [backend_mod.count_preload(3)], []).start())
    assert service.count == 5
