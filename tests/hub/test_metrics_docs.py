"""docs/METRICS.md and the Grafana dashboard in packaging/grafana/ agree with the code:
each metric is documented once, the dashboard is valid JSON whose panels use documented
metrics through a data source chosen by a variable."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hub.counting import HubCounters

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "packaging" / "grafana" / "ferry.json"
SUFFIXES = ("_bucket", "_count", "_sum")


def documented() -> list[str]:
    """The names in the first column of docs/METRICS.md's tables."""
    text = (ROOT / "docs" / "METRICS.md").read_text(encoding="utf-8")
    return re.findall(r"^\| `(ferry_[a-z_]+)` \|", text, flags=re.MULTILINE)


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_metric_is_documented_once() -> None:
    names = documented()
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    families = {f.name for f in HubCounters().registry.collect()}
    # prometheus_client names a counter's family without its _total; the page adds it
    assert {n.removesuffix("_total") for n in names} >= families


def test_the_dashboard_uses_documented_metrics_through_a_data_source_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    names = set(documented())
    used = set()
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            found = {base(n) for n in re.findall(r"\b(ferry_[a-z_]+)", target["expr"])}
            assert found <= names, (panel["title"], found - names)
            assert found or "process_" in target["expr"], panel["title"]
            used |= found
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # what operators watch first is on the dashboard
    assert used >= {"ferry_hub_tasks", "ferry_hub_jobs", "ferry_hub_clients",
                    "ferry_hub_tasks_finished_total", "ferry_hub_tasks_failed_total",
                    "ferry_hub_leases_expired_total", "ferry_hub_claim_seconds",
                    "ferry_hub_checkin_seconds", "ferry_agent_lanes_busy",
                    "ferry_agent_outbox_items", "ferry_agent_last_checkin_age_seconds",
                    "ferry_agent_hub_failovers_total"}
