"""The cw_agent scrape configuration applied to a real Dask scheduler and worker.

A scheduler and a worker of the distributed version the platform runs are started on
127.0.0.1 with queued work; their /metrics pages are relabelled with the rules the role
renders (Prometheus relabel semantics, implemented below) and the result must be exactly the
shared CloudWatch metrics (Workers, QueuedTasks, ProcessingTasks, DesiredWorkers,
MemoryBytes) with the ClusterName label the EMF declarations use as dimension. The Grafana
dashboard's expressions are checked against the same real pages.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "dask-cluster.json"
SHARED = {"Workers", "QueuedTasks", "ProcessingTasks", "DesiredWorkers"}


def _render_module():
    spec = importlib.util.spec_from_file_location("cw_render", ROOT / "tests" / "unit" / "test_cw_agent_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _slow(x: int) -> int:
    time.sleep(0.2)
    return x


async def _scrape() -> tuple[str, str]:
    from distributed import Client, Scheduler, Worker

    async with (
        Scheduler(host="127.0.0.1", dashboard_address="127.0.0.1:0") as scheduler,
        Worker(scheduler.address, nthreads=1, dashboard_address="127.0.0.1:0") as worker,
        Client(scheduler.address, asynchronous=True) as client,
    ):
        futures = client.map(_slow, range(60))
        await asyncio.sleep(1.0)

        def get(port: int) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                return r.read().decode()

        pages = (
            await asyncio.to_thread(get, scheduler.http_server.port),
            await asyncio.to_thread(get, worker.http_server.port),
        )
        await client.cancel(futures)
        return pages


@pytest.fixture(scope="module")
def pages() -> tuple[str, str]:
    return asyncio.run(_scrape())


@pytest.fixture(scope="module")
def scrape_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    render = _render_module().render
    prometheus = render(
        tmp_path_factory.mktemp("scrape"),
        cw_agent_scrape_scheduler=True,
        cw_agent_scrape_worker=True,
        cw_agent_cluster_name="it",
    )[1]
    return {job["job_name"]: job for job in prometheus["scrape_configs"]}


def samples(page: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for fam in text_string_to_metric_families(page) for s in fam.samples]


def relabel(series: list[tuple[str, dict[str, str], float]], job: dict) -> list[tuple[dict[str, str], float]]:
    """Prometheus target labels + metric_relabel_configs (replace and keep actions)."""
    target_labels = job["static_configs"][0]["labels"] | {"job": job["job_name"]}
    out = []
    for name, labels, value in series:
        lab = target_labels | labels | {"__name__": name}
        keep = True
        for rule in job["metric_relabel_configs"]:
            joined = rule.get("separator", ";").join(lab.get(s, "") for s in rule["source_labels"])
            match = re.fullmatch(rule.get("regex", "(.*)"), joined)
            action = rule.get("action", "replace")
            if action == "keep" and not match:
                keep = False
                break
            if action == "replace" and match:
                lab[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$", "\\"))
        if keep:
            out.append((lab, value))
    return out


def test_scheduler_metrics_become_the_shared_names(pages: tuple[str, str], scrape_config: dict) -> None:
    kept = relabel(samples(pages[0]), scrape_config["dask-scheduler"])
    names = {lab["__name__"] for lab, _value in kept}
    assert names == SHARED
    assert all(lab["ClusterName"] == "it" and lab["job"] == "dask-scheduler" for lab, _value in kept)
    by_name: dict[str, list[float]] = {}
    for lab, value in kept:
        by_name.setdefault(lab["__name__"], []).append(value)
    # 60 tasks of 0.2 s on one thread: most wait in the scheduler's queue.
    assert by_name["QueuedTasks"] == [pytest.approx(by_name["QueuedTasks"][0])]
    assert by_name["QueuedTasks"][0] > 10
    assert len(by_name["ProcessingTasks"]) == 1
    assert by_name["ProcessingTasks"][0] >= 1
    # Workers comes once per state: their Sum is the number of workers.
    assert sum(by_name["Workers"]) == 1
    assert len(by_name["DesiredWorkers"]) == 1


def test_worker_memory_becomes_memory_bytes(pages: tuple[str, str], scrape_config: dict) -> None:
    kept = relabel(samples(pages[1]), scrape_config["dask-worker"])
    assert {lab["__name__"] for lab, _value in kept} == {"MemoryBytes"}
    assert sorted(lab["type"] for lab, _value in kept) == ["managed", "unmanaged"]
    assert sum(value for _lab, value in kept) > 10_000_000  # a Python process holds more than 10 MB


def test_emf_declarations_select_every_published_metric(scrape_config: dict, tmp_path: Path) -> None:
    agent = _render_module().render(tmp_path, cw_agent_scrape_scheduler=True, cw_agent_scrape_worker=True)[0]
    decls = agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"]
    selected = {sel.strip("^$") for d in decls for sel in d["metric_selectors"]}
    assert selected == SHARED | {"MemoryBytes"}
    assert {d["label_matcher"].strip("^$") for d in decls} == set(scrape_config)


def test_dashboard_queries_exist_on_a_real_cluster(pages: tuple[str, str]) -> None:
    exposed = {sample[0] for page in pages for sample in samples(page)}
    exposed |= {fam.name for page in pages for fam in text_string_to_metric_families(page)}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {m for e in exprs for m in re.findall(r"\b(dask_[a-z_]+)", e)}
    assert used, "the dashboard queries no Dask metric"
    missing = sorted(used - exposed)
    assert not missing, f"dashboard uses metrics a real scheduler/worker does not expose: {missing}"
