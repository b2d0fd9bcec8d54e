"""The live call model built from AMI events."""

from __future__ import annotations

from hotline_bridge.calls.model import CallModel, created_after, endpoint_of


def ev(name: str, uid: str, chan: str, **kw: str) -> dict[str, str]:
    return {
        "Event": name,
        "Uniqueid": uid,
        "Linkedid": kw.pop("linked", uid),
        "Channel": chan,
        **kw,
    }


CITIZEN = ("1.1", "PJSIP/carrier-00000001")
AGENT = ("1.2", "PJSIP/agent1001-00000002")


def model_with_call() -> CallModel:
    mdl = CallModel({"agent1001": "1001", "agent1002": "1002"}, ["partner-110"])
    mdl.apply(ev("Newchannel", *CITIZEN, CallerIDNum="13800138000"), now=1.0)
    mdl.apply(ev("Newchannel", *AGENT, CallerIDNum="13800138000", linked="1.1"), now=2.0)
    mdl.apply(ev("BridgeEnter", *CITIZEN, BridgeUniqueid="b1"), now=3.0)
    mdl.apply(ev("BridgeEnter", *AGENT, BridgeUniqueid="b1"), now=4.0)
    return mdl


def test_endpoint_of() -> None:
    assert endpoint_of("PJSIP/agent1001-0000002a") == "agent1001"
    assert endpoint_of("PJSIP/partner-110-00000003") == "partner-110"
    assert endpoint_of("Local/12345@hotline-citizens-00000001;1") == ""


def test_bridged_citizen_and_agent_make_a_call() -> None:
    mdl = model_with_call()
    (call,) = mdl.live_calls()
    assert call.call_id == "1.1" and call.citizen_number == "13800138000"
    assert call.agent_id == "1001" and call.agent_channel == AGENT[1]
    assert call.since == 4.0
    assert mdl.call_of_agent("1001") == call
    assert mdl.call_of_agent("1002") is None
    assert mdl.call("1.1") == call and mdl.call("1.2") is None


def test_duplicate_events_are_harmless() -> None:
    mdl = model_with_call()
    before = mdl.live_calls()
    mdl.apply(ev("BridgeEnter", *AGENT, BridgeUniqueid="b1"), now=9.0)
    mdl.apply(ev("Newchannel", *CITIZEN, CallerIDNum="13800138000"), now=9.0)
    assert mdl.live_calls() == before


def test_leaving_or_hanging_up_ends_the_call() -> None:
    mdl = model_with_call()
    mdl.apply(ev("BridgeLeave", *AGENT, BridgeUniqueid="b1"), now=5.0)
    assert mdl.live_calls() == []
    mdl = model_with_call()
    mdl.apply(ev("Hangup", *CITIZEN), now=5.0)
    assert mdl.live_calls() == [] and "1.1" not in mdl.channels
    mdl.apply(ev("Hangup", *CITIZEN), now=6.0)  # twice


def test_partner_in_the_room_does_not_hide_the_call() -> None:
    mdl = model_with_call()
    mdl.apply(ev("BridgeEnter", "1.3", "PJSIP/partner-110-00000003", BridgeUniqueid="b1"), now=5.0)
    assert mdl.call_of_agent("1001") is not None


def test_two_agents_in_one_bridge_is_not_a_citizen_call() -> None:
    mdl = model_with_call()
    mdl.apply(ev("BridgeEnter", "1.4", "PJSIP/agent1002-00000004", BridgeUniqueid="b1"), now=5.0)
    assert mdl.live_calls() == []


def test_rebuild_from_core_show_channels() -> None:
    mdl = model_with_call()
    mdl.clear()
    for uid, chan in (CITIZEN, AGENT):
        mdl.apply(
            ev("CoreShowChannel", uid, chan, CallerIDNum="13800138000", BridgeId="b1"), now=7.0
        )
    (call,) = mdl.live_calls()
    assert call.agent_id == "1001" and call.citizen_number == "13800138000"


def test_a_uniqueid_tells_which_channel_the_pbx_created_later() -> None:
    assert created_after("1796383674.11321", "1796383670.10961")
    assert created_after("1796383670.10962", "1796383670.10961")  # same second
    assert created_after("1796383671.2", "1796383670.10961")  # later second, PBX restarted
    assert not created_after("1796383670.10961", "1796383674.11321")
    assert not created_after("1.1", "1.1")
    assert created_after("pbx-2-1796383674.9", "pbx-2-1796383670.8")  # a systemname prefix
    # Cannot be told: another PBX's channel, or no Uniqueid at all.
    assert not created_after("pbx-1-1796383674.9", "pbx-2-1796383670.8")
    assert not created_after("t-abc", "1796383670.8")
