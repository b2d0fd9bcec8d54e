"""What every hotkey driver shares (lab.drill.driver: the load drill, the fault drill and the
cluster drill): the admin AMI's view of the drill's calls, and the drill's SIPp peers."""

from __future__ import annotations

from pathlib import Path

from lab.cluster import load_cluster
from lab.drill import Drill, DrillOptions
from lab.drill.driver import CallWatch, drill_agents, drill_citizens, drill_desk, pool_token
from lab.drill.options import DrillCall
from lab.sandbox import DEFAULT_TOPOLOGY, load_topology

TOPO = load_topology(DEFAULT_TOPOLOGY)
CITIZEN = "PJSIP/drill-carrier-00000001"
AGENT = "PJSIP/pool1007-00000002"
DESK = "PJSIP/drill-partner-110-00000003"


def ev(name: str, uid: str, chan: str, t: float, **kw: str) -> dict[str, str]:
    return {"Event": name, "Uniqueid": uid, "Channel": chan, "Timestamp": str(t), **kw}


def test_a_citizen_meeting_a_pool_agent_is_a_new_call_once() -> None:
    w = CallWatch(TOPO)
    assert w.on_event(ev("Newchannel", "1.1", CITIZEN, 1.0)) is None
    assert w.offered == 1
    assert w.on_event(ev("BridgeEnter", "1.1", CITIZEN, 2.0, BridgeUniqueid="b1",
                         CallerIDNum="13900000001")) is None  # fmt: skip
    rec = w.on_event(ev("BridgeEnter", "1.2", AGENT, 2.5, BridgeUniqueid="b1"))
    assert rec is not None and w.calls == {"1.1": rec}
    assert (rec.uid, rec.channel, rec.number) == ("1.1", CITIZEN, "13900000001")
    assert (rec.agent_id, rec.agent_channel, rec.bridged_at) == ("1007", AGENT, 2.5)
    # The agent leaves and comes back (a transfer's return): pressed already, not a new call.
    w.on_event(ev("BridgeLeave", "1.2", AGENT, 3.0, BridgeUniqueid="b1"))
    assert w.on_event(ev("BridgeEnter", "1.2", AGENT, 4.0, BridgeUniqueid="b1")) is None
    # The desk joins the citizen's call: carried; the citizen hangs up.
    w.on_event(ev("BridgeEnter", "1.3", DESK, 5.0, BridgeUniqueid="b2", Linkedid="1.1"))
    w.on_event(ev("Hangup", "1.1", CITIZEN, 9.0))
    assert (rec.partner_bridged_at, rec.hung_up_at) == (5.0, 9.0)


def test_other_channels_and_half_bridges_are_not_calls() -> None:
    w = CallWatch(TOPO)
    # The tests' own peers on the same PBX are none of the drill's business.
    assert w.on_event(ev("BridgeEnter", "2.1", "PJSIP/carrier-00000009", 1.0,
                         BridgeUniqueid="b3")) is None  # fmt: skip
    assert w.on_event(ev("BridgeEnter", "2.2", AGENT, 1.0, BridgeUniqueid="b4")) is None
    w.on_event(ev("BridgeLeave", "2.2", AGENT, 2.0, BridgeUniqueid="b4"))
    assert w.calls == {} and w.bridges == {} and w.offered == 0
    assert w.prefixes == ("PJSIP/drill-carrier-", "PJSIP/pool", "PJSIP/drill-partner-110-")
    mix = CallWatch(TOPO, ("PJSIP/desk-a-", "PJSIP/desk-b-"))
    assert mix.desk_prefixes == ("PJSIP/desk-a-", "PJSIP/desk-b-")


def test_the_drill_peers_are_the_topologys_on_the_media_ports_asked(tmp_path: Path) -> None:
    desk = drill_desk(TOPO, tmp_path, hold=8, media_port=26010, trace=False)
    assert (desk.scenario.name, desk.port, desk.name, desk.hold) == (
        "partner_drill_uas.xml", TOPO["drill"]["partner_sip_port"], "partner", 60.0
    )  # fmt: skip
    assert desk.extra_args == ["-rtp_echo", "-mp", "26010"] and not desk.trace_messages
    agents = drill_agents(TOPO, tmp_path, hold=20, media_port=26000, trace=True, refer=True)
    assert (agents.scenario.name, agents.port, agents.hold) == (
        "agent_refer_uas.xml", TOPO["agent_pool"]["sip_port"], 80.0
    )  # fmt: skip
    assert agents.extra_args == ["-rtp_echo", "-mp", "26000", "-aa"]
    pbx = TOPO["pbx"]
    assert agents.keys == {"pbx": f"{pbx['sip_host']}:{pbx['sip_port']}", "target": "110"}
    citizens = drill_citizens(
        TOPO, tmp_path / "c", ["13900000001", "13900000002"], rate=5, hold=4, media_port=27000,
        trace=False,
    )  # fmt: skip
    assert (citizens.calls, citizens.rate, citizens.hold, citizens.port) == (
        2, 5, 4, TOPO["drill"]["citizen_sip_port"]
    )  # fmt: skip
    assert citizens.extra_args == ["-mp", "27000", "-l", "180"]
    assert (tmp_path / "c" / "citizens.csv").read_text() == (
        "SEQUENTIAL\n13900000001;\n13900000002;\n"
    )
    assert (tmp_path / "c" / "g711a.raw").stat().st_size > 0  # rtp_stream reads it from its cwd


def test_every_cluster_pbx_has_the_drills_peers_and_pool_tokens() -> None:
    for node in load_cluster().nodes:
        w = CallWatch(node.topology)
        assert w.carrier_prefix == "PJSIP/drill-carrier-"
        first = node.topology["agent_pool"]["first_id"]
        assert pool_token(node.topology, str(first)) == f"sandbox-token-cluster-pool-{first}"


def test_the_load_drill_takes_its_calls_from_the_watch(tmp_path: Path) -> None:
    # refer: the agents' phones transfer by themselves, so no key is pressed from here.
    drill = Drill(DrillOptions(mode="refer", rate=1, duration=1, results=tmp_path))
    drill.on_event(ev("Newchannel", "3.1", CITIZEN, 1.0))
    drill.on_event(ev("BridgeEnter", "3.1", CITIZEN, 2.0, BridgeUniqueid="b5"))
    drill.on_event(ev("BridgeEnter", "3.2", AGENT, 2.0, BridgeUniqueid="b5"))
    assert drill.offered_seen == 1 and list(drill.calls) == ["3.1"]
    assert drill.calls["3.1"].way == "refer" and drill.tasks == set()


async def test_a_partner_joining_before_the_press_answer_names_the_room_still_counts(
    tmp_path: Path,
) -> None:
    # A desk that answers at once can join the room before the drill has read the HTTP answer
    # that names it (CI: the 120 desk, 6 ms after the press); the join must not be lost, or the
    # agent never leaves and the call counts as not carried.
    drill = Drill(DrillOptions(mode="bridge", rate=1, duration=1, results=tmp_path))
    rec = DrillCall(uid="4.1", channel=CITIZEN, kind="three_way", ref="c-early")
    drill.on_event(ev("ConfbridgeJoin", "c-early-partner", DESK, 5.0, Conference="c-early"))
    drill.on_event(ev("ConfbridgeJoin", "4.9", DESK, 5.0, Conference="c-other"))  # no partner
    assert drill.early_joins == {"c-early": 5.0}
    drill.room_named(rec)
    assert rec.partner_bridged_at == 5.0 and len(drill.tasks) == 1  # the leave is pressed
    assert drill.early_joins == {}
    for task in drill.tasks:
        task.cancel()
    late = DrillCall(uid="4.2", channel=CITIZEN, kind="three_way", ref="c-late")
    drill.room_named(late)  # named first, joined after: the usual order
    drill.on_event(ev("ConfbridgeJoin", "c-late-partner", DESK, 6.0, Conference="c-late"))
    assert late.partner_bridged_at == 6.0
    for task in drill.tasks:
        task.cancel()
