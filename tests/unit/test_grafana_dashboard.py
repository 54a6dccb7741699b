"""docs/grafana/dask-cluster.json: valid, importable, and showing what a platform team checks first.

That its queries name metrics a real scheduler and worker expose is checked by
tests/integration/test_cw_prometheus_scrape.py.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "docs" / "grafana" / "dask-cluster.json").read_text())
PANELS = DASHBOARD["panels"]


def test_top_level_fields() -> None:
    assert DASHBOARD["uid"] == "dataplatform-dask-cluster"
    assert isinstance(DASHBOARD["schemaVersion"], int)
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_panel_ids_unique_and_grid_without_overlap() -> None:
    ids = [p["id"] for p in PANELS]
    assert len(ids) == len(set(ids))
    cells = {}
    for p in PANELS:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x, y in itertools.product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])):
            assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
            cells[(x, y)] = p["title"]


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_every_panel_queries_the_selected_datasource(panel: dict) -> None:
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert panel["type"] in {"stat", "timeseries"}
    ref_ids = [t["refId"] for t in panel["targets"]]
    assert ref_ids and len(ref_ids) == len(set(ref_ids))
    for target in panel["targets"]:
        expr = target["expr"]
        assert expr.count("(") == expr.count(")"), expr
        assert expr.count("{") == expr.count("}"), expr
        assert re.search(r"\bdask_[a-z_]+", expr), expr
        assert 'job=~"$job"' in expr, f"{panel['title']}: query ignores the job variable"


def test_the_panels_a_platform_team_looks_at_first() -> None:
    titles = {p["title"] for p in PANELS}
    for wanted in (
        "Workers",
        "Desired workers",
        "Queued tasks",
        "Workers: desired vs connected",
        "Tasks by state",
        "Cluster memory by type",
        "Memory per worker",
        "Spilled to disk",
    ):
        assert wanted in titles


def test_queued_tasks_threshold_matches_the_alarm() -> None:
    playbook = (ROOT / "playbooks" / "monitoring.yml").read_text()
    alarm_default = float(re.search(r"dask_monitoring_queue_threshold \| default\((\d+)\)", playbook).group(1))
    (queued,) = (p for p in PANELS if p["title"] == "Queued tasks")
    steps = queued["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps if s["color"] == "red"] == [alarm_default]
