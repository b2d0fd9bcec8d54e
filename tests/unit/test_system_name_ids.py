"""Call ids of PBXes with a system name (issue 14): several PBXes behind one bridge store each set
``systemname`` in asterisk.conf, so their Uniqueids are ``<systemname>-<epoch>.<seq>`` and never
collide. Every place that reads a call id takes that form as it takes ``<epoch>.<seq>``: the
sandbox's rendering, the call model, the records' references, the hotkey's path and the call a
press names in its body, the FastAGI environment and the entry hook's call log row, the log
masking and the metrics' label guard."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lab.cluster import load_cluster
from lab.sandbox import DEFAULT_TOPOLOGY, load_topology, sandbox_module

from hotline_bridge.agi.decisions import call_facts, entry_decision
from hotline_bridge.agi.protocol import parse_env
from hotline_bridge.calls.model import CallModel
from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.core.privacy import contains_phone_number, mask_text
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.hotkey import HotkeyRequest
from hotline_bridge.handoffs.intake import HandoffInput
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.runtime.metrics import OTHER, _LabelGuard
from hotline_bridge.runtime.placement import Route, route

CITIZEN_ID = "pbx-2-1764432000.41"
AGENT_ID = "pbx-2-1764432000.42"
# The longest: Asterisk keeps 19 characters of systemname; a 10-digit epoch, a 10-digit count.
LONGEST = "p" * 19 + "-1764432000.4294967295"
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


# -- the sandbox gives each cluster PBX its own system name ------------------------------------


def test_each_cluster_pbx_renders_its_own_systemname_and_the_single_sandbox_none() -> None:
    sb = sandbox_module()
    names = []
    for node in load_cluster().nodes:
        conf = sb.render_files(node.topology)["asterisk.conf"]
        (line,) = [x for x in conf.splitlines() if x.startswith("systemname")]
        names.append(line.split("=", 1)[1].strip())
    assert names == ["pbx-1", "pbx-2", "pbx-3"]  # the nodes' names, each its own
    single = sb.render_files(load_topology(DEFAULT_TOPOLOGY))["asterisk.conf"]
    assert not [x for x in single.splitlines() if x.startswith("systemname")]


@pytest.mark.parametrize("bad", ["pbx.1", "pbx,1", "pbx 1", "-pbx", "p" * 20, ""])
def test_a_systemname_a_call_id_could_not_carry_is_refused(bad: str) -> None:
    sb = sandbox_module()
    topo = load_topology(DEFAULT_TOPOLOGY)
    topo["pbx"]["systemname"] = bad
    with pytest.raises(sb.SandboxError, match=r"\[pbx\]\.systemname"):
        sb.validate_topology(topo)


# -- the bridge reads such ids as it reads the others ------------------------------------------


def model_with_call(citizen: str, agent: str) -> CallModel:
    mdl = CallModel({"agent2101": "2101"}, ["partner-110"])
    chans = ((citizen, "PJSIP/carrier-00000001"), (agent, "PJSIP/agent2101-00000002"))
    for uid, chan in chans:
        ev = {"Uniqueid": uid, "Linkedid": citizen, "Channel": chan, "CallerIDNum": "13800138000"}
        mdl.apply({"Event": "Newchannel", **ev}, now=1.0)
    for uid, chan in chans:
        ev = {"Uniqueid": uid, "Linkedid": citizen, "Channel": chan, "BridgeUniqueid": "b1"}
        mdl.apply({"Event": "BridgeEnter", **ev}, now=2.0)
    return mdl


def test_the_call_model_keys_a_call_on_its_system_named_uniqueid() -> None:
    mdl = model_with_call(CITIZEN_ID, AGENT_ID)
    call = mdl.call(CITIZEN_ID)
    assert call is not None and call.call_id == CITIZEN_ID and call.linkedid == CITIZEN_ID
    assert mdl.call_of_agent("2101") == call
    assert mdl.call_of_agent_channel(AGENT_ID) == call  # what a phone key's hook looks up
    # Another PBX's call with the same epoch and count is another call.
    assert mdl.call("pbx-1-1764432000.41") is None


def test_the_hotkey_route_and_body_take_the_system_named_form() -> None:
    assert route(f"/v1/calls/{CITIZEN_ID}/carry-transfer") == Route("call", CITIZEN_ID)
    assert route(f"/v1/calls/{LONGEST}/three-way") == Route("call", LONGEST)
    # The call a phone names in its press ({"call_id": ...}).
    for call_id in (CITIZEN_ID, LONGEST):
        assert HotkeyRequest(target="110", call_id=call_id).call_id == call_id


@pytest.mark.parametrize("call_id", [CITIZEN_ID, LONGEST])
def test_a_record_keeps_the_system_named_call_ids(tmp_path: Path, call_id: str) -> None:
    store = SqliteHandoffStore(tmp_path / "h.sqlite3")
    try:
        recorder = StoreRecorder(
            store, load_catalog(), site=Platform.HOTLINE_12345, public_url="http://127.0.0.1:1/"
        )
        mdl = model_with_call(call_id, call_id.replace(".", ".9", 1))
        call = mdl.call(call_id)
        assert call is not None
        hid = recorder.open(
            kind="carry_transfer", call=call, target="110", handoff=HandoffInput(), now=10.0
        )
        record = store.get(hid)
        assert record is not None
        assert (record.snapshot.refs.call_id, record.snapshot.refs.linked_id) == (call_id, call_id)
    finally:
        store.close()


def test_the_entry_hook_reads_and_logs_a_system_named_uniqueid() -> None:
    raw = (
        b"agi_network: yes\nagi_network_script: entry\n"
        b"agi_request: agi://127.0.0.1:4873/entry\nagi_channel: PJSIP/carrier-0000001a\n"
        + f"agi_uniqueid: {CITIZEN_ID}\n".encode()
        + b"agi_callerid: 13800138000\nagi_extension: 12345\n\n"
    )
    facts = call_facts(parse_env(raw))
    assert facts.call_id == CITIZEN_ID
    decision = entry_decision(facts, Jurisdiction.GUCHENG, "no", NOW)
    assert decision.call is not None and decision.call.call_id == CITIZEN_ID
    # Two PBXes' calls of the same second and count are two rows of the call log.
    other_pbx = replace(facts, call_id="pbx-1-1764432000.41")
    other = entry_decision(other_pbx, Jurisdiction.GUCHENG, "no", NOW)
    assert other.call is not None and other.call.call_id != decision.call.call_id


@pytest.mark.parametrize("call_id", [CITIZEN_ID, "pbx-13-1764432000.12", LONGEST])
def test_logs_and_metrics_treat_it_as_an_id_not_a_number_nor_a_label(call_id: str) -> None:
    line = f"carry transfer restored call_id={call_id}"
    assert mask_text(line) == line and not contains_phone_number(line)
    assert _LabelGuard(limit=8)(call_id) == OTHER
