"""The sandbox PBX itself: a real Asterisk 22 on loopback, configured from asterisk/sandbox.toml,
running the product dialplan (dialplans/hotline.conf) with SIPp citizens, agents and partners.

The pbx tests need root and sipp (see tests/conftest.py); the render test runs anywhere.
Timings are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import subprocess
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession, is_event
from lab.calls import (
    FIRST_CITIZEN,
    agent_uas,
    citizen_uac,
    hang_up_leftovers,
    is_user_event,
    partner_uas,
    wait_bridged,
)
from lab.sandbox import Sandbox, sandbox_module
from lab.sipp import SippProcess, stop_all

from tests.pbx.waiting import eventually

pbx = pytest.mark.pbx

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").split("%")[0]
    if host == "*":
        return False
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip in LOOPBACK or ip == ipaddress.ip_address("::1")


def asterisk_sockets(pid: int) -> list[tuple[str, str, str, int]]:
    """(proto, state, host, port) of every TCP/UDP socket of the process, in any state."""
    out = subprocess.run(
        ["ss", "-H", "-n", "-t", "-u", "-a", "-p"], capture_output=True, text=True, check=True
    ).stdout
    socks = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        cols = line.split()
        proto, state, local = cols[0], cols[1], cols[4]
        host, _, port = local.rpartition(":")
        socks.append((proto, state, host, int(port)))
    return socks


def outside_loopback(
    socks: list[tuple[str, str, str, int]], topology: dict[str, Any]
) -> tuple[list[tuple[str, str, str, int]], list[tuple[str, str, str, int]]]:
    """Split the non-loopback sockets into (violations, pjproject DNS client sockets).

    Known exception: res_pjsip always creates pjproject's DNS resolver (as soon as the system
    has any nameserver; glibc assumes 127.0.0.1 when resolv.conf lists none), and pjlib binds
    its two query sockets (IPv4, IPv6) to the wildcard address on an ephemeral port, with no
    option to change that. They are client sockets: UDP, wildcard, not a port Asterisk serves."""
    pbx, ami = topology["pbx"], topology["ami"]
    served = {int(pbx["sip_port"]), int(ami["port"])}
    rtp = range(int(pbx["rtp_start"]), int(pbx["rtp_end"]) + 1)
    bad, dns = [], []
    for sock in socks:
        proto, _state, host, port = sock
        if _is_loopback(host):
            continue
        wildcard = host.strip("[]") in ("0.0.0.0", "::", "*")  # noqa: S104
        if proto == "udp" and wildcard and port not in served and port not in rtp:
            dns.append(sock)
        else:
            bad.append(sock)
    return bad, dns


# ------------------------------------------------------------------------------------------------
# (d) rendering: no PBX needed
# ------------------------------------------------------------------------------------------------


def test_render_is_deterministic_and_stays_on_loopback(
    topology: dict[str, Any], tmp_path: Path
) -> None:
    sb = sandbox_module()
    first, second = sb.render_files(topology), sb.render_files(topology)
    assert first == second
    a, b = tmp_path / "a", tmp_path / "b"
    sb.render(topology, a)
    sb.render(topology, b)
    sb.render(topology, b)  # re-rendering replaces, it does not accumulate
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) == sorted(first)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

    for name, text in first.items():
        code = "\n".join(
            line.split(";", 1)[0]
            for line in text.splitlines()
            if not line.startswith("deny = 0.0.0.0/0.0.0.0")  # AMI: deny all, then permit loopback
        )
        assert "0.0.0.0" not in code, f"{name} binds or permits the wildcard address"  # noqa: S104
        # The templates' placeholders are lower case (${site}); Asterisk's own variables, which
        # the dialplans and the phone keys' applicationmap use, are upper case.
        left = re.search(r"\$\{[a-z_]+\}", code)
        assert left is None or name.startswith("hotline"), f"{name}: unrendered {left}"
    manager = first["manager.conf"]
    assert re.search(r"^bindaddr = 127\.0\.0\.1$", manager, re.M)
    assert re.search(r"^webenabled = no$", manager, re.M)
    assert f"[{topology['ami']['username']}]" in manager
    assert f"[{topology['sandbox_admin']['username']}]" in manager
    assert re.search(r"^bind = 127\.0\.0\.1:5060$", first["pjsip.conf"], re.M)
    modules = first["modules.conf"]
    assert re.search(r"^autoload = no$", modules, re.M)
    loaded = set(re.findall(r"^(?:load|require|preload) = (\S+)", modules, re.M))
    assert {
        "chan_pjsip.so",
        "app_queue.so",
        "app_confbridge.so",
        "res_pjsip_header_funcs.so",
    } <= loaded
    for unwanted in (
        "chan_iax2.so",
        "res_http_websocket.so",
        "res_ari.so",
        "res_xmpp.so",
        "pbx_ael.so",
    ):
        assert unwanted not in loaded
    # Every agent and partner endpoint is in pjsip.conf; every agent is a queue member.
    for agent in topology["agents"]:
        assert f"[{agent['endpoint']}](hotline-endpoint)" in first["pjsip.conf"]
        assert f"member => PJSIP/{agent['endpoint']}," in first["queues.conf"]
    for target in topology["targets"].values():
        assert (
            f"contact = sip:{target['number']}@{target['sip_host']}:{target['sip_port']}"
            in (first["pjsip.conf"])
        )
    assert (
        "HOTLINE_NUMBER = " + topology["citizens"]["dial_number"] in first["hotline-globals.conf"]
    )

    # The topology itself may not leave loopback.
    bad = {**topology, "pbx": {**topology["pbx"], "sip_host": "0.0.0.0"}}  # noqa: S104
    with pytest.raises(sb.SandboxError, match=r"127\.0\.0\.0/8"):
        sb.validate_topology(bad)


# ------------------------------------------------------------------------------------------------
# (a) version, (b) sockets
# ------------------------------------------------------------------------------------------------


@pbx
def test_sandbox_runs_asterisk_22_9_or_later(sandbox: Sandbox) -> None:
    version = sandbox.rx("core show version")
    m = re.search(r"Asterisk (\d+)\.(\d+)\.(\d+)", version)
    assert m, version
    assert (int(m[1]), int(m[2])) >= (22, 9), version
    print(f"\n{version.strip()}; this session started it: {sandbox.started_here}")
    assert sandbox.log_path.exists()


@pbx
def test_nothing_listens_outside_loopback(sandbox: Sandbox) -> None:
    pid = sandbox.pid
    assert pid is not None
    socks = asterisk_sockets(pid)
    bad, dns = outside_loopback(socks, sandbox.topology)
    assert not bad, f"Asterisk sockets outside 127.0.0.0/8: {bad} (all: {socks})"
    assert len(dns) <= 2, f"unexpected wildcard UDP sockets: {dns}"
    pbx_cfg, ami = sandbox.topology["pbx"], sandbox.topology["ami"]
    assert ("udp", "UNCONN", pbx_cfg["sip_host"], pbx_cfg["sip_port"]) in socks
    assert ("tcp", "LISTEN", ami["host"], ami["port"]) in socks
    # Only the AMI socket listens on TCP (no HTTP, no SIP over TCP, no IAX2...).
    listening_tcp = [s for s in socks if s[0] == "tcp" and s[1] == "LISTEN"]
    assert listening_tcp == [("tcp", "LISTEN", ami["host"], ami["port"])], listening_tcp


@pbx
async def test_bridge_ami_user_has_the_rights_it_needs_and_no_more(sandbox: Sandbox) -> None:
    ami = sandbox.topology["ami"]
    session = await AmiSession.connect(
        ami["host"], int(ami["port"]), ami["username"], ami["secret"]
    )
    nochan = "PJSIP/no-such-channel-00000000"
    try:
        allowed: dict[str, dict[str, Any]] = {
            "Ping": {},
            "Setvar": {"Channel": nochan, "Variable": "HANDOFF_ID", "Value": "x"},
            "Getvar": {"Channel": nochan, "Variable": "HANDOFF_ID"},
            "BlindTransfer": {"Channel": nochan, "Context": "hotline-handoff", "Exten": "carry"},
            "Redirect": {
                "Channel": nochan,
                "Context": "hotline-handoff",
                "Exten": "carry",
                "Priority": 1,
            },
            "Hangup": {"Channel": nochan},
            "ConfbridgeKick": {"Conference": "no-such-room", "Channel": nochan},
            "ConfbridgeList": {"Conference": "no-such-room"},
            "BridgeInfo": {"BridgeUniqueid": "no-such-bridge"},
            "Originate": {
                "Channel": "PJSIP/no-such-endpoint",
                "Application": "Wait",
                "Data": "1",
                "Timeout": 1000,
            },
            "UserEvent": {"UserEvent": "HotlineSandboxProbe"},
        }
        for action, fields in allowed.items():
            resp = await session.action(action, **fields)
            assert "Permission denied" not in str(resp.get("Message")), (action, resp)
        for action in ("CoreShowChannels", "BridgeList", "QueueStatus"):
            assert isinstance(await session.action_list(action), list)
        # What the bridge must never do.
        denied: dict[str, dict[str, Any]] = {
            "Command": {"Command": "core show version"},
            "Filter": {"Operation": "Add", "Filter": "Event: Newchannel"},
            "Reload": {},
        }
        for action, fields in denied.items():
            resp = await session.action(action, **fields)
            assert resp.get("Response") == "Error" and "Permission denied" in str(
                resp.get("Message")
            ), (
                action,
                resp,
            )
        # It receives UserEvents (read class "user").
        await session.wait_event(is_event("UserEvent", UserEvent="HotlineSandboxProbe"), timeout=5)
    finally:
        await session.close()


# ------------------------------------------------------------------------------------------------
# (c) a citizen call through the queue to an agent
# ------------------------------------------------------------------------------------------------


@pbx
async def test_citizen_call_reaches_an_agent_through_the_queue(
    sandbox: Sandbox, admin_ami: AmiSession, tmp_path: Path
) -> None:
    topology = sandbox.topology
    await hang_up_leftovers(admin_ami)
    agents = agent_uas(topology, tmp_path)
    citizen = citizen_uac(topology, tmp_path, hold=20)
    try:
        for agent in agents:
            await agent.start()
        mark = admin_ami.mark()
        t0 = time.monotonic()
        await citizen.start(settle=0)
        pair = await wait_bridged(admin_ami, since=mark)
        print(
            f"\ncitizen INVITE -> both legs bridged: {(pair.at - t0) * 1000:.0f} ms "
            f"({pair.citizen} + {pair.agent})"
        )

        # AMI agrees: both channels are up and in that bridge.
        channels = {c["Channel"]: c for c in await admin_ami.action_list("CoreShowChannels")}
        assert channels[pair.citizen]["BridgeId"] == channels[pair.agent]["BridgeId"] == pair.bridge
        assert channels[pair.citizen]["CallerIDNum"] == FIRST_CITIZEN

        # Media of a live call stays on loopback too (RTP bound to media_address).
        pid = sandbox.pid
        assert pid is not None
        socks = asterisk_sockets(pid)
        bad, _ = outside_loopback(socks, topology)
        assert not bad, f"sockets outside loopback during a call: {bad}"
        rtp = range(topology["pbx"]["rtp_start"], topology["pbx"]["rtp_end"] + 1)
        assert any(s[0] == "udp" and s[3] in rtp for s in socks), f"no RTP socket: {socks}"

        # The PBX ends the call: both SIPp legs get a BYE.
        await admin_ami.action_ok("Hangup", Channel=pair.citizen)
        result = await citizen.wait(timeout=15)
        assert result.returncode == 0, result.describe()
        assert [m.method for m in result.received()] == ["BYE"], result.describe()
        agent_results = [await agent.stop() for agent in agents]
    finally:
        await stop_all(citizen, *agents)

    invites = [(r, m) for r in agent_results for m in r.received("INVITE")]
    assert len(invites) == 1, [r.describe() for r in agent_results]
    agent_result, invite = invites[0]
    assert agent_result.returncode == 0, agent_result.describe()
    assert pair.agent.startswith(f"PJSIP/{agent_result.name}-")
    # The agent's phone shows the citizen's own number.
    assert f"sip:{FIRST_CITIZEN}@" in invite.header("From"), invite.header("From")
    assert agent_result.received("BYE"), agent_result.describe()


# ------------------------------------------------------------------------------------------------
# The dialplan contract the bridge relies on (dialplans/hotline.conf)
# ------------------------------------------------------------------------------------------------


async def _citizen_with_agent(
    topology: dict[str, Any], ami: AmiSession, tmp_path: Path
) -> tuple[Any, list[Any], Any]:
    await hang_up_leftovers(ami)
    agents = agent_uas(topology, tmp_path)
    citizen = citizen_uac(topology, tmp_path, hold=30)
    for agent in agents:
        await agent.start()
    mark = ami.mark()
    await citizen.start(settle=0)
    pair = await wait_bridged(ami, since=mark)
    return citizen, agents, pair


async def _set_handoff_vars(
    ami: AmiSession,
    channel: str,
    handoff_id: str,
    agent: str,
    ring_timeout: int = 5,
    dial: str = "PJSIP/110@partner-110",
) -> None:
    """What the bridge does before a carry transfer (one Setvar per variable)."""
    values = {
        "HANDOFF_ID": handoff_id,
        "HANDOFF_URL": f"http://127.0.0.1:8345/handoffs/{handoff_id}",
        "HANDOFF_DIAL": dial,
        "HANDOFF_TARGET": "110",
        "HANDOFF_FORWARDER": "12345",
        "HANDOFF_RING_TIMEOUT": str(ring_timeout),
        "HANDOFF_RETURN_DIAL": f"PJSIP/{agent}",
        "HANDOFF_RETURN_QUEUE": "hotline-12345",
    }
    for name, value in values.items():
        await ami.action_ok("Setvar", Channel=channel, Variable=name, Value=value)


def _endpoint(channel: str) -> str:
    return channel.split("/", 1)[1].rsplit("-", 1)[0]


@pbx
async def test_carry_transfer_presents_the_citizen_to_the_partner(
    sandbox: Sandbox, admin_ami: AmiSession, tmp_path: Path
) -> None:
    topology = sandbox.topology
    partner = partner_uas(topology, tmp_path, variables={"citizen": FIRST_CITIZEN}, hold=1)
    citizen: SippProcess | None = None
    agents: list[SippProcess] = []
    try:
        await partner.start()
        citizen, agents, pair = await _citizen_with_agent(topology, admin_ami, tmp_path)
        await _set_handoff_vars(admin_ami, pair.citizen, "h-carry-1", _endpoint(pair.agent))
        mark = admin_ami.mark()
        t0 = time.monotonic()
        resp = await admin_ami.action(
            "BlindTransfer", Channel=pair.agent, Context="hotline-handoff", Exten="carry"
        )
        assert resp.get("Response") == "Success", resp
        joined = await wait_bridged(admin_ami, since=mark, other_prefix="PJSIP/partner-110-")
        assert joined.citizen == pair.citizen  # the citizen's own channel dialled the partner
        print(
            f"\nBlindTransfer -> citizen bridged with the partner: {(joined.at - t0) * 1000:.1f} ms"
        )
        answered = await admin_ami.wait_event(
            lambda ev: (
                ev.get("Event") == "DialEnd"
                and ev.get("Channel") == pair.citizen
                and ev.get("DialStatus") == "ANSWER"
            ),
            since=mark,
            timeout=10,
        )
        # The answer is seen on the citizen's own channel, dialling the partner.
        assert answered["DestChannel"].startswith("PJSIP/partner-110-")
        # The partner holds the call 1 s; then Dial returns: HandoffResult ANSWER, HandoffEnd.
        result = await admin_ami.wait_event(
            is_user_event("HandoffResult", HandoffId="h-carry-1"), since=mark, timeout=10
        )
        assert result["DialStatus"] == "ANSWER" and result["Channel"] == pair.citizen
        assert result["_t"] - answered["_t"] > 0.5
        await admin_ami.wait_event(is_user_event("HandoffEnd", HandoffId="h-carry-1"), since=mark)
        cresult = await citizen.wait(timeout=10)
        presult = await partner.stop()
    finally:
        await stop_all(partner, *agents, *([citizen] if citizen else []))
    assert presult.returncode == 0, presult.describe()
    assert cresult.returncode == 0, cresult.describe()
    invite = presult.received("INVITE")[0]
    assert f"sip:{FIRST_CITIZEN}@" in invite.header("From")
    assert f"sip:{FIRST_CITIZEN}@" in invite.header("P-Asserted-Identity")
    assert invite.header("X-Handoff-Id") == "h-carry-1"
    assert invite.header("Call-Info") == "<http://127.0.0.1:8345/handoffs/h-carry-1>;purpose=info"
    assert "sip:12345@" in invite.header("Diversion") and "reason=unconditional" in invite.header(
        "Diversion"
    )
    history = ",".join(invite.header_all("History-Info"))
    assert "sip:12345@" in history and "sip:110@" in history


@pbx
@pytest.mark.parametrize(
    ("case", "scenario", "dial", "status"),
    [
        ("busy", "partner_busy_uas.xml", "PJSIP/110@partner-110", "BUSY"),
        ("noanswer", "partner_noanswer_uas.xml", "PJSIP/110@partner-110", "NOANSWER"),
        # A comma would smuggle Dial options in: the dialplan refuses the dial string.
        ("invalid", "partner_uas.xml", "PJSIP/110@partner-110,,G(x)", "INVALIDARGS"),
    ],
    ids=["busy", "noanswer", "invalid-dial"],
)
async def test_failed_carry_transfer_brings_the_citizen_back_to_the_agent(
    sandbox: Sandbox,
    admin_ami: AmiSession,
    tmp_path: Path,
    case: str,
    scenario: str,
    dial: str,
    status: str,
) -> None:
    topology = sandbox.topology
    partner = partner_uas(topology, tmp_path, scenario=scenario)
    citizen: SippProcess | None = None
    agents: list[SippProcess] = []
    handoff = f"h-{case}-1"
    try:
        await partner.start()
        citizen, agents, pair = await _citizen_with_agent(topology, admin_ami, tmp_path)
        agent = _endpoint(pair.agent)
        await _set_handoff_vars(admin_ami, pair.citizen, handoff, agent, ring_timeout=2, dial=dial)
        mark = admin_ami.mark()
        t0 = time.monotonic()
        await admin_ami.action_ok(
            "BlindTransfer", Channel=pair.agent, Context="hotline-handoff", Exten="carry"
        )
        result = await admin_ami.wait_event(
            is_user_event("HandoffResult", HandoffId=handoff), since=mark, timeout=10
        )
        assert result["DialStatus"] == status
        back = await admin_ami.wait_event(
            is_user_event("HandoffReturn", HandoffId=handoff), since=mark
        )
        assert back["ReturnDial"] == f"PJSIP/{agent}"
        again = await wait_bridged(
            admin_ami, since=admin_ami.events.index(back), other_prefix=f"PJSIP/{agent}-"
        )
        print(f"\n{case} partner -> citizen back with {agent}: {(again.at - t0) * 1000:.0f} ms")
        assert again.citizen == pair.citizen  # same call: the citizen never noticed
        await admin_ami.action_ok("Hangup", Channel=pair.citizen)
        cresult = await citizen.wait(timeout=10)
        presult = await partner.stop()
        agent_results = {r.name: r for r in [await a.stop() for a in agents]}
    finally:
        await stop_all(partner, *agents, *([citizen] if citizen else []))
    assert cresult.returncode == 0, cresult.describe()
    assert presult.returncode == 0, presult.describe()
    if case == "invalid":
        assert not presult.received("INVITE")  # nothing was dialled
    # The agent's phone got the citizen twice: the queue call, then the return.
    returned = agent_results[agent].received("INVITE")
    assert len(returned) == 2, agent_results[agent].describe()
    assert all(f"sip:{FIRST_CITIZEN}@" in m.header("From") for m in returned)


@pbx
@pytest.mark.parametrize("leaver", ["agent", "partner"])
async def test_three_way_call_goes_on_when_agent_or_partner_leaves(
    sandbox: Sandbox, admin_ami: AmiSession, tmp_path: Path, leaver: str
) -> None:
    """Citizen + agent + partner in one room; the agent (done) or the partner (handoff
    cancelled) is kicked and the other two talk on; the citizen's hang-up ends the room."""
    topology = sandbox.topology
    partner = partner_uas(topology, tmp_path, variables={"citizen": FIRST_CITIZEN})
    citizen: SippProcess | None = None
    agents: list[SippProcess] = []
    room = f"hb-test-{int(time.time() * 1000)}"
    try:
        await partner.start()
        citizen, agents, pair = await _citizen_with_agent(topology, admin_ami, tmp_path)
        for channel in (pair.citizen, pair.agent):
            await admin_ami.action_ok("Setvar", Channel=channel, Variable="CONF_ROOM", Value=room)
        mark = admin_ami.mark()
        await admin_ami.action_ok(
            "Redirect",
            Channel=pair.citizen,
            Context="hotline-conference",
            Exten="citizen",
            Priority=1,
            ExtraChannel=pair.agent,
            ExtraContext="hotline-conference",
            ExtraExten="agent",
            ExtraPriority=1,
        )
        await admin_ami.action_ok(
            "Originate",
            Channel="PJSIP/110@partner-110",
            Application="ConfBridge",
            Data=f"{room},hotline_bridge,hotline_partner",
            CallerID=f'"{FIRST_CITIZEN}" <{FIRST_CITIZEN}>',
            Variable="PJSIP_HEADER(add,X-Handoff-Id)=h-3way-1",
            Timeout=15000,
            Async="true",
        )

        async def members() -> set[str]:
            return {
                m["Channel"] for m in await admin_ami.action_list("ConfbridgeList", Conference=room)
            }

        await admin_ami.wait_event(is_event("ConfbridgeJoin", Conference=room), since=mark)
        deadline = time.monotonic() + 10
        while len(await members()) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        three = await members()
        assert pair.citizen in three and pair.agent in three and len(three) == 3, three
        partner_channel = next(c for c in three if c.startswith("PJSIP/partner-110-"))

        gone = pair.agent if leaver == "agent" else partner_channel
        kicked = admin_ami.mark()
        await admin_ami.action_ok("ConfbridgeKick", Conference=room, Channel=gone)
        await admin_ami.wait_event(
            is_event("ConfbridgeLeave", Conference=room, Channel=gone), since=kicked
        )
        await eventually(lambda: _is(members(), three - {gone}), f"{gone} left the room")

        await admin_ami.action_ok("Hangup", Channel=pair.citizen)  # the citizen ends the room
        await admin_ami.wait_event(is_event("ConfbridgeEnd", Conference=room), since=kicked)
        presult = await partner.stop()
        cresult = await citizen.wait(timeout=10)
    finally:
        await stop_all(partner, *agents, *([citizen] if citizen else []))
    assert cresult.returncode == 0, cresult.describe()
    invite = presult.received("INVITE")[0]
    assert f"sip:{FIRST_CITIZEN}@" in invite.header("From")
    assert f"sip:{FIRST_CITIZEN}@" in invite.header("P-Asserted-Identity")
    assert invite.header("X-Handoff-Id") == "h-3way-1"
    assert presult.received("BYE"), presult.describe()


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected
