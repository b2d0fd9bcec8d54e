"""The load drill's agent pool (settings and sandbox rendering) and the drill's pure helpers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lab.drill import DrillError, DrillOptions, _gettimeofday, percentiles
from lab.microbench import ingest, synthetic_stream
from lab.sandbox import DEFAULT_TOPOLOGY, bridge_settings, load_topology, sandbox_module

from hotline_bridge.config.settings import ConfigError, load_settings

POOL = {"count": 3, "first_id": 2001, "endpoint_prefix": "pool", "token_prefix": "lab-token-pool-"}


def sandbox_config(**changes: Any) -> dict[str, Any]:
    """The sandbox topology's bridge settings with the pool (and anything else) changed."""
    topo = load_topology(DEFAULT_TOPOLOGY)
    topo["agent_pool"] = {**topo["agent_pool"], **POOL, **changes.pop("agent_pool", {})}
    topo.update(changes)
    return dict(sandbox_module().bridge_config(topo))


def test_the_sandbox_expands_its_pool_into_agents_after_the_listed_ones() -> None:
    s = load_settings(**sandbox_config())
    assert [a.id for a in s.agents] == ["1001", "1002", "2001", "2002", "2003"]
    pool2002 = s.agent("2002")
    assert pool2002 is not None
    assert pool2002.endpoint == "pool2002"
    assert pool2002.token.get_secret_value() == "lab-token-pool-2002"
    assert s.bridge.mode == "sandbox"


def test_the_production_settings_know_no_pool() -> None:
    cfg = sandbox_config()
    with pytest.raises(ConfigError, match="agent_pool"):
        load_settings(**cfg, agent_pool=POOL)


def test_sandbox_mode_is_for_loopback_only() -> None:
    cfg = sandbox_config()
    cfg["ami"] = {**cfg["ami"], "host": "10.1.2.3"}
    with pytest.raises(ConfigError, match=r"loopback only: ami\.host"):
        load_settings(**cfg)


def test_pool_agents_obey_the_agent_rules() -> None:
    clash = sandbox_config(agent_pool={"first_id": 1001, "endpoint_prefix": "agent"})
    with pytest.raises(ConfigError, match="duplicate agent"):
        load_settings(**clash)
    with pytest.raises(ConfigError, match="token"):
        load_settings(**sandbox_config(agent_pool={"token_prefix": "short"}))


def test_the_sandbox_topology_has_a_pool_the_bridge_and_the_pbx_agree_on() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    settings = bridge_settings(DEFAULT_TOPOLOGY)
    sb = sandbox_module()
    rendered = sb.render_files(topo)
    pool = sb.pool_agents(topo)
    assert len(pool) == topo["agent_pool"]["count"] >= 160
    by_id = {a.id: a for a in settings.agents}
    for agent in pool:
        assert by_id[agent["id"]].endpoint == agent["endpoint"]
        assert by_id[agent["id"]].token.get_secret_value() == agent["token"]
    pjsip, queues = rendered["pjsip.conf"], rendered["queues.conf"]
    first, port = pool[0]["endpoint"], topo["agent_pool"]["sip_port"]
    assert f"[{first}](pool-agent)" in pjsip
    assert f"contact = sip:{first}@127.0.0.1:{port}" in pjsip
    assert f"[{first}-identify]" not in pjsip  # one address for 200 agents: no identify
    # The pool has its own queue; the tests' queue keeps its two agents only.
    tests_queue, pool_queue = queues.split(f"[{topo['agent_pool']['queue']}]")
    assert f"member => PJSIP/{first}," in pool_queue and "pool" not in tests_queue
    drill = rendered["hotline-drill.conf"]
    assert f"Set(HOTLINE_QUEUE={topo['agent_pool']['queue']})" in drill
    assert "#include hotline-drill.conf" in rendered["extensions.conf"]


def test_a_topology_without_a_pool_renders_an_empty_drill_dialplan() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    del topo["agent_pool"], topo["drill"]
    sb = sandbox_module()
    sb.validate_topology(topo)
    rendered = sb.render_files(topo)
    assert "[hotline-drill-citizens]" not in rendered["hotline-drill.conf"]
    assert "pool" not in rendered["pjsip.conf"]


def test_drill_options_are_bounded() -> None:
    DrillOptions(rate=20, duration=60, mix=0.1).check()
    for bad in (
        DrillOptions(rate=0),
        DrillOptions(rate=500),
        DrillOptions(duration=3600),
        DrillOptions(mix=1.5),
        DrillOptions(mode="raw", mix=0.1),
        DrillOptions(mode="sideways"),
    ):
        with pytest.raises(DrillError):
            bad.check()


def test_sipp_gettimeofday_microseconds_are_unpadded() -> None:
    # SIPp prints both as doubles and does not zero-pad the microseconds: "5" is 5 us.
    assert _gettimeofday({"s": "1795971152.000000", "us": "5.000000"}) == pytest.approx(
        1795971152.000005
    )
    assert _gettimeofday({"s": "1795971152.000000", "us": "504428.000000"}) == pytest.approx(
        1795971152.504428
    )
    assert _gettimeofday({"s": "x"}) is None


def test_percentiles_nearest_rank() -> None:
    p = percentiles([float(v) for v in range(1, 101)])
    assert (p["n"], p["p50"], p["p90"], p["p99"], p["max"]) == (100, 50.0, 90.0, 99.0, 100.0)
    assert percentiles([])["p50"] is None


def test_synthetic_ami_stream_goes_through_the_real_ingestion_path(tmp_path: Path) -> None:
    result = asyncio.run(ingest(synthetic_stream(20), DEFAULT_TOPOLOGY, repeat=1))
    assert result["events"] == 20 * 41  # events per synthetic call
    assert 0 < result["dispatched"] < result["events"]  # the name filter dropped some
    assert result["handler_errors"] == 0
