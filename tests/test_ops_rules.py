"""The ops artefacts in ``ops/`` against the code that feeds them.

- every metric name used by the Grafana dashboard and the alert rules is exposed by a real
  ``/metrics`` scrape of the bridge's aiohttp app (so renaming a metric fails here, not on a
  dark dashboard at 3 a.m.);
- the alert rules pass ``promtool check rules`` and their unit tests (``promtool test rules``),
  every alert has a firing and a not-firing case, labels, annotations and a runbook section;
- the dashboard's queries are valid PromQL, and the scrape passes ``promtool check metrics``.

promtool comes from Debian's ``prometheus`` package; without it those tests skip (``make setup``
installs it), except under ``HOTLINE_REQUIRE_PBX=1`` (CI, ``make test``), where they fail. ``alerts.yml`` is read with a small line parser because PyYAML is not a
dependency: promtool validates the file fully, and the parser's rule count is checked against
promtool's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lab.sandbox import bridge_settings
from prometheus_client.parser import text_string_to_metric_families

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.conferences import machine as cm
from hotline_bridge.conferences.machine import Role
from hotline_bridge.core.commands import CommandResult, Redirect
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.partners.link import PushOutcome
from hotline_bridge.runtime.app import METRICS, build
from hotline_bridge.runtime.metrics import Metrics, OutboxStats
from hotline_bridge.transfers import machine as tm
from tests.plans import CARRY_PLAN, THREE_WAY_PLAN, another_call

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "asterisk" / "sandbox.toml"
OPS = ROOT / "ops"
DASHBOARD = OPS / "grafana" / "hotline-bridge.json"
ALERTS = OPS / "prometheus" / "alerts.yml"
ALERTS_TEST = OPS / "prometheus" / "alerts_test.yml"
RUNBOOK = OPS / "README.md"

PROMTOOL = shutil.which("promtool")
# The same flag that makes a missing PBX fail rather than skip: CI must never skip these.
REQUIRED = os.environ.get("HOTLINE_REQUIRE_PBX") == "1"
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not REQUIRED,
    reason="promtool not installed (Debian package 'prometheus'; `make setup` installs it)",
)
# Series Prometheus itself adds to every scrape target.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
T0 = 1_700_000_000.0


# -- promtool ----------------------------------------------------------------------------------


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is not installed (apt-get install prometheus)"
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def check_metrics_text(text: str) -> None:
    """``promtool check metrics`` on an exposition: fails with promtool's findings (naming lint:
    ``_total`` on counters, base units, help text; and parse errors)."""
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


# -- PromQL: which metric names does an expression read? ---------------------------------------

_PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan", "Inf", "NaN"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords, label
    names (in ``{}`` or ``by (...)``), strings, durations, numbers or Grafana variables."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\S+", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    e = re.sub(r"(?<![\w:])[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?", " ", e)
    names: set[str] = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end() :].lstrip().startswith("(") or m.group(0) in _PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by plain values, so promtool can parse the query."""
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$instance", ".*")
    )


def test_metric_names_reads_names_not_functions_labels_or_variables() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, kind) (rate(hotline_handoff_answer_seconds_bucket"
        '{job="hotline-bridge",instance=~"$instance"}[$__rate_interval])))\n/ on (kind) '
        'group_left sum(up{job="x"} offset 5m) > 1e3 and vector(1)'
    )
    assert metric_names(expr) == {"hotline_handoff_answer_seconds_bucket", "up"}
    assert metric_names('sum(rate(hotline_transfers_totl{outcome!~"a|b"}[5m]))') == {
        "hotline_transfers_totl"
    }


# -- a real scrape ------------------------------------------------------------------------------


def populate(m: Metrics) -> None:
    """Sample traffic so every labelled family has at least one series in the scrape."""
    plan = CARRY_PLAN
    t, _ = tm.start(plan, now=T0)
    done, _ = tm.step(t, tm.PartnerResult("ANSWER"), now=T0 + 4)
    m.transfer_changed(t, done)

    tw = replace(THREE_WAY_PLAN, call=another_call(1))
    redirect = Redirect(
        "c-1",
        tw.call.citizen_channel,
        "hotline-conference",
        "citizen",
        tw.call.agent_channel,
        "agent",
    )
    c, _ = cm.start(tw, now=T0)
    for i, event in enumerate(
        (
            CommandResult(redirect, True),
            cm.MemberJoined(Role.CITIZEN),
            cm.MemberJoined(Role.AGENT),
            cm.MemberJoined(Role.PARTNER, "PJSIP/partner-110-00000005"),
            cm.MemberLeft(Role.CITIZEN),
        )
    ):
        new, _ = cm.step(c, event, now=T0 + 1 + i)
        m.conference_changed(c, new)
        c = new

    for name in ("QueueCallerJoin", "QueueCallerJoin", "AgentConnect", "QueueCallerAbandon"):
        m.on_pbx_event({"Event": name, "Queue": "hotline-12345", "CallerIDNum": "13800138000"})
    m.observe_ami_action("Setvar", 0.0007)
    m.observe_ami_action("BlindTransfer", 0.002)
    for outcome in PushOutcome:
        m.handoff_pushed(outcome)
    m.watch_outbox(lambda: OutboxStats(depth=4, oldest_age_s=42.0))


@pytest.fixture
async def scrape(tmp_path: Path) -> AsyncIterator[str]:
    """``GET /metrics`` of the bridge's own app (``app.build``: real wiring, AMI not started)."""
    settings = bridge_settings(TOPOLOGY)
    store = SqliteHandoffStore(tmp_path / "handoffs.sqlite3")
    recorder = StoreRecorder(
        store,
        load_catalog(),
        site=Platform(settings.bridge.site),
        public_url=settings.http.public_url,
    )
    bridge = build(settings, recorder)
    populate(bridge.app[METRICS])
    try:
        async with TestClient(TestServer(bridge.app)) as client:
            resp = await client.get("/metrics")
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            yield await resp.text()
    finally:
        store.close()


def exposed(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples} | SYNTHETIC


async def test_the_scrape_exposes_every_bridge_family_with_samples(scrape: str) -> None:
    names = exposed(scrape)
    for name in (
        "hotline_transfers_total",
        "hotline_three_way_calls_total",
        "hotline_handoff_answer_seconds_bucket",
        "hotline_ami_action_seconds_bucket",
        "hotline_handoff_record_write_seconds_bucket",
        "hotline_citizen_calls_total",
        "hotline_handoff_pushes_total",
        "hotline_handoff_outbox_depth",
        "hotline_handoff_outbox_oldest_age_seconds",
        "hotline_ami_connected",
        "hotline_ami_reconnects_total",
        "hotline_ami_events_total",
        "hotline_ami_action_timeouts_total",
        "hotline_live_calls",
        "hotline_live_transfers",
        "hotline_live_conferences",
    ):
        assert name in names, name


@needs_promtool
async def test_the_scrape_passes_promtool_check_metrics(scrape: str) -> None:
    check_metrics_text(scrape)


# -- the dashboard -------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in dashboard()["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # panels of collapsed rows
    return [p for p in out if p.get("type") != "row"]


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]


def test_dashboard_is_importable_json_with_a_prometheus_datasource_variable() -> None:
    d = dashboard()
    assert d["schemaVersion"] == 39
    assert d["uid"] == "hotline-bridge"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dashboard_panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]


def test_dashboard_shows_the_answer_rate_against_the_95_percent_target() -> None:
    panel = next(p for p in dashboard_panels() if p["title"].startswith("Manual answer rate ("))
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {"color": "green", "value": 0.95} in steps
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    assert 'result="answered"' in panel["targets"][0]["expr"]


async def test_every_dashboard_query_reads_only_metrics_the_bridge_exposes(scrape: str) -> None:
    names = exposed(scrape)
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    for title, expr in exprs:
        used = metric_names(expr)
        assert used, f"{title}: no metric found in {expr!r}"
        assert used <= names, f"{title}: not exposed by the bridge: {sorted(used - names)}"


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
                    for i, (_, expr) in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps(rules), encoding="utf-8")  # JSON is YAML
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# -- the alert rules ----------------------------------------------------------------------------


@dataclass
class Rule:
    alert: str
    expr: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # labels and annotations, flattened


def alert_rules() -> list[Rule]:
    """``alerts.yml``'s alerts: name, expr (single line or block scalar), scalar keys."""
    rules: list[Rule] = []
    lines = ALERTS.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if m := re.match(r"\s*- alert:\s*(\S+)", line):
            rules.append(Rule(m.group(1)))
            continue
        m = re.match(r"(\s*)([A-Za-z_]+):\s*(.*)$", line)
        if not rules or not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        if rest in ("|", ">-", "|-", ">"):
            block: list[str] = []
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                block.append(lines[i].strip())
                i += 1
            rest = ("\n" if rest.startswith("|") else " ").join(b for b in block if b)
        rest = rest.strip('"')
        if key == "expr":
            rules[-1].expr = rest
        elif rest:
            rules[-1].keys[key] = rest
    return rules


def test_the_rule_parser_sees_every_rule_promtool_sees() -> None:
    rules = alert_rules()
    assert len(rules) == len(re.findall(r"^\s*- alert:", ALERTS.read_text(), re.M)) >= 10
    assert all(r.expr for r in rules)
    if PROMTOOL is not None:
        out = promtool("check", "rules", str(ALERTS)).stdout
        assert f"SUCCESS: {len(rules)} rules found" in out, out


def test_the_alerts_the_brief_asks_for_exist() -> None:
    names = {r.alert for r in alert_rules()}
    assert {
        "HotlineBridgeDown",
        "HotlineAmiDown",
        "HotlineTransferFailureRatioHigh",
        "HotlineTransferLatencyHigh",
        "HotlineManualAnswerRateLow",
        "HotlineOutboxBacklogGrowing",
        "HotlineOutboxTooDeep",
    } <= names


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### (\w+)\s*$", runbook, re.M))
    for r in alert_rules():
        assert r.keys.get("severity") in ("critical", "warning"), r.alert
        assert r.keys.get("summary") and r.keys.get("description"), r.alert
        assert r.keys.get("runbook") == f"ops/README.md#{r.alert.lower()}", r.alert
        assert r.alert in headings, f"ops/README.md has no '### {r.alert}' section"


async def test_every_alert_reads_only_metrics_the_bridge_exposes(scrape: str) -> None:
    names = exposed(scrape)
    for r in alert_rules():
        used = metric_names(r.expr)
        assert used, r.alert
        assert used <= names, f"{r.alert}: not exposed by the bridge: {sorted(used - names)}"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    """In alerts_test.yml each alertname is evaluated at least once with ``exp_alerts: []``
    and at least once with an expected alert."""
    cases: dict[str, set[bool]] = {}
    current = ""
    for line in ALERTS_TEST.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"\s*alertname:\s*(\S+)", line):
            current = m.group(1)
        elif m := re.match(r"\s*exp_alerts:\s*(\[\])?\s*(#.*)?$", line):
            cases.setdefault(current, set()).add(m.group(1) is None)
    for r in alert_rules():
        assert cases.get(r.alert) == {True, False}, f"{r.alert}: {cases.get(r.alert)}"


@needs_promtool
def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
