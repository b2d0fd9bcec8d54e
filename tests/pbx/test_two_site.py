"""Issue 5: two PBXes, two bridges, voice handoffs in both directions (asterisk/two-site/).

A 12345 PBX (SIP 5260, AMI 5238) and a 110 PBX (SIP 5160, AMI 5138), each with its bridge (HTTP
8445 / 8545, AGI 4673 / 4773), linked by a SIP trunk (a partner target on each side) and by the
signed partner link (records and their events). The single-site sandbox is not touched.

The proof of the carried number is the SIP the receiving agent's SIPp phone got; the proof of the
record is in both bridges' stores (HTTP API) and the receiving PBX's channel variables.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab.bridge import RunningBridge, start_bridge
from lab.calls import hang_up_leftovers
from lab.sandbox import REPO, Sandbox
from lab.sipp import stop_all
from lab.softphone import Softphone

from hotline_bridge.partners.link import PUSH_PATH
from tests.browser import chromium, need_browser

from .conftest import Parties
from .test_console import console_page, shot

pytestmark = pytest.mark.pbx

TWO_SITE = REPO / "asterisk" / "two-site"
REPORT: dict[str, float] = {}  # measured latencies, printed at the end of the module


@dataclass
class Site:
    name: str
    sandbox: Sandbox
    bridge: RunningBridge
    started_pbx: bool

    @property
    def topology(self) -> dict[str, Any]:
        return self.sandbox.topology

    def supervisor(self) -> str:
        return str(self.topology["api_clients"][0]["token"])

    def agent(self) -> tuple[str, str]:
        a = self.topology["agents"][0]
        return str(a["id"]), str(a["token"])


@dataclass
class TwoSites:
    hotline: Site  # 12345
    police: Site  # 110


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoSites]:
    """Both two-site PBXes and both bridges; stops what it started (a PBX already running, e.g.
    from `make sandbox-two-site`, is left running)."""
    sites: list[Site] = []
    started: list[tuple[Sandbox, bool]] = []
    try:
        for name in ("12345", "110"):
            sb = Sandbox(TWO_SITE / f"{name}.toml")
            started.append((sb, sb.start()))
        for (sb, was_started), name in zip(started, ("12345", "110"), strict=True):
            rb = start_bridge(
                sb.topology_path,
                sb.topology,
                tmp_path_factory.mktemp(f"bridge-{name}"),
                overrides={"HOTLINE_BRIDGE_LOG_LEVEL": "debug"},
            )
            sites.append(Site(name, sb, rb, was_started))
        yield TwoSites(sites[0], sites[1])
    finally:
        for site in reversed(sites):
            site.bridge.stop()
        for sb, was_started in reversed(started):
            if was_started:
                sb.stop()
        if REPORT:
            print("\ntwo-site timings:", json.dumps(REPORT, indent=1))


@dataclass
class Peers:
    hotline: Parties
    police: Parties


@pytest.fixture
async def peers(two_sites: TwoSites, tmp_path: Path) -> AsyncIterator[Peers]:
    """SIPp peers of both sites; both PBXes idle before and after."""
    amis = [two_sites.hotline.sandbox.admin_ami(), two_sites.police.sandbox.admin_ami()]
    sessions = [await a.__aenter__() for a in amis]
    for ami in sessions:
        await hang_up_leftovers(ami)
    p = Peers(
        Parties(tmp_path / "12345", two_sites.hotline.topology),
        Parties(tmp_path / "110", two_sites.police.topology),
    )
    p.hotline.workdir.mkdir()
    p.police.workdir.mkdir()
    try:
        yield p
    finally:
        for ami in sessions:
            await hang_up_leftovers(ami)
        await stop_all(*reversed(p.hotline.procs), *reversed(p.police.procs))
        for a in amis:
            await a.__aexit__(None, None, None)


async def poll(fn: Any, within: float = 10.0, every: float = 0.02) -> Any:
    """Call ``fn()`` (async) until it returns something truthy; that value."""
    deadline = time.monotonic() + within
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing within {within} s ({fn})")
        await asyncio.sleep(every)


async def channel_vars(site: Site, prefix: str, *names: str) -> dict[str, str]:
    """Channel variables of the one live channel whose name starts with ``prefix``."""
    async with site.sandbox.admin_ami() as ami:
        chans = [
            e["Channel"]
            for e in await ami.action_list("CoreShowChannels")
            if str(e.get("Channel", "")).startswith(prefix)
        ]
        assert len(chans) == 1, chans
        out = {}
        for name in names:
            resp = await ami.action("Getvar", Channel=chans[0], Variable=name)
            out[name] = str(resp.get("Value", ""))
        return out


async def handoff_by_voice(
    sender: Site,
    receiver: Site,
    peers_of: tuple[Parties, Parties],
    number: str,
    target: str,
    handoff: dict[str, Any],
) -> dict[str, Any]:
    """A citizen calls ``sender``; its agent carry-transfers to ``receiver`` whose agent answers.
    Returns what was seen, with timings (seconds from the hotkey press)."""
    send_parties, recv_parties = peers_of
    recv_agents = await recv_parties.agents()
    await send_parties.agents()
    await send_parties.citizen(number)
    agent_id, call = await sender.bridge.wait_for_call()
    assert call["citizen_number"] == number
    token = sender.bridge.token(agent_id)

    t0 = time.monotonic()
    status, body = await sender.bridge.request(
        "POST",
        f"/v1/agents/{agent_id}/carry-transfer",
        {"target": target, "handoff": handoff},
        token,
    )
    assert status == 202, body
    handoff_id = body["handoff_id"]
    sup = receiver.supervisor()

    async def record_there() -> Any:
        st, rec = await receiver.bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=sup)
        return rec if st == 200 else None

    record = await poll(record_there)
    t_record = time.monotonic() - t0
    transfer = await sender.bridge.wait_state(
        f"/v1/transfers/{body['transfer_id']}", token, {"answered"}, 20
    )
    t_answered = time.monotonic() - t0

    # The receiving agent's phone: the citizen's number, not the forwarding platform's.
    recv_id, recv_token = receiver.agent()
    (invite,) = recv_agents[recv_id].snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("From"), invite.header("From")
    pai = invite.header("P-Asserted-Identity")
    assert not pai or f"<sip:{number}@" in pai, pai

    # The X-Handoff-Id reached the receiving PBX and its receiving hook routed on the record.
    pvars = await channel_vars(
        receiver,
        f"PJSIP/partner-{sender.name}-",
        "HANDOFF_RECEIVED_ID",
        "HANDOFF_URGENCY",
        "HANDOFF_CLASS",
        "CALLERID(num)",
    )
    assert pvars["HANDOFF_RECEIVED_ID"] == handoff_id, pvars
    assert pvars["CALLERID(num)"] == number, pvars

    # Screen data for the receiving agent.
    status, screen = await receiver.bridge.request(
        "GET", f"/v1/agents/{recv_id}/current-handoff", token=recv_token
    )
    assert status == 200, screen
    assert screen["handoff_id"] == handoff_id
    assert screen["caller_number"] == number
    assert screen["urgency"] == pvars["HANDOFF_URGENCY"]
    assert screen["record"]["snapshot"]["target"] == target

    # 签收 by the receiving agent, pushed back to the sender.
    t_ack0 = time.monotonic()
    status, ack = await receiver.bridge.request(
        "POST", f"/v1/handoffs/{handoff_id}/events", {"kind": "acknowledged"}, recv_token
    )
    assert status == 201, ack

    async def ack_back() -> Any:
        st, rec = await sender.bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
        assert st == 200, rec
        acks = [e for e in rec["events"] if e["kind"] == "acknowledged"]
        return (rec, acks) if acks else None

    sender_record, acks = await poll(ack_back)
    t_ack_back = time.monotonic() - t0
    assert len(acks) == 1
    return {
        "handoff_id": handoff_id,
        "transfer": transfer,
        "record": record,
        "pvars": pvars,
        "screen": screen,
        "ack": ack,
        "ack_seen": acks[0],
        "sender_record": sender_record,
        "invite": invite,
        "t_record": t_record,
        "t_answered": t_answered,
        "t_ack_roundtrip": time.monotonic() - t_ack0,
        "t_ack_back": t_ack_back,
    }


async def test_12345_hands_a_police_matter_to_110_by_voice(
    two_sites: TwoSites, peers: Peers
) -> None:
    number = "13800138111"
    seen = await handoff_by_voice(
        two_sites.hotline,
        two_sites.police,
        (peers.hotline, peers.police),
        number,
        "110",
        {"matter_class": "police_matter", "violent_risk": True, "place": "古城区 test"},
    )
    assert seen["transfer"]["outcome"] == "answered"
    assert seen["pvars"]["HANDOFF_URGENCY"] == "urgent"
    assert seen["pvars"]["HANDOFF_CLASS"] == "police_matter"
    assert seen["record"]["snapshot"]["direction"] == "12345->110"
    # The acknowledgement came back with its time and who made it (the 110 agent, via the link).
    ack = seen["ack_seen"]
    assert ack["at"] == seen["ack"]["at"]
    assert ack["actor"]["kind"] == "partner" and "1101" in ack["actor"]["id"], ack
    assert seen["sender_record"]["state"]["status"] == "acknowledged", seen["sender_record"]
    REPORT.update(
        {
            "12345->110 hotkey->record at 110 (s)": round(seen["t_record"], 3),
            "12345->110 hotkey->110 agent answered (s)": round(seen["t_answered"], 3),
            "12345->110 ack POST->seen at 12345 (s)": round(seen["t_ack_roundtrip"], 3),
            "12345->110 hotkey->ack at 12345 (s)": round(seen["t_ack_back"], 3),
        }
    )


async def test_110_hands_a_neighbour_dispute_to_12345_by_voice(
    two_sites: TwoSites, peers: Peers
) -> None:
    number = "13900139222"
    seen = await handoff_by_voice(
        two_sites.police,
        two_sites.hotline,
        (peers.police, peers.hotline),
        number,
        "12345",
        {"category": "dispute.neighbour"},
    )
    assert seen["transfer"]["outcome"] == "answered"
    assert seen["pvars"]["HANDOFF_URGENCY"] == "normal"
    matter = seen["screen"]["record"]["snapshot"]["matter"]
    assert matter["category"] == "dispute.neighbour"
    assert seen["sender_record"]["state"]["status"] == "acknowledged"
    REPORT.update(
        {
            "110->12345 hotkey->record at 12345 (s)": round(seen["t_record"], 3),
            "110->12345 hotkey->12345 agent answered (s)": round(seen["t_answered"], 3),
            "110->12345 hotkey->ack at 110 (s)": round(seen["t_ack_back"], 3),
        }
    )


async def test_current_handoff_is_404_on_a_citizens_own_call(
    two_sites: TwoSites, peers: Peers
) -> None:
    site = two_sites.hotline
    await peers.hotline.agents()
    await peers.hotline.citizen("13700137333")
    agent_id, _call = await site.bridge.wait_for_call()
    status, body = await site.bridge.request(
        "GET", f"/v1/agents/{agent_id}/current-handoff", token=site.bridge.token(agent_id)
    )
    assert status == 404, body


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


async def test_a_handoff_made_while_110_is_down_arrives_once_after_it_returns(
    two_sites: TwoSites,
) -> None:
    hotline, police = two_sites.hotline, two_sites.police
    _agent_id, token = hotline.agent()
    await asyncio.to_thread(police.bridge.stop)
    try:
        status, view = await hotline.bridge.request(
            "POST",
            "/v1/work-orders",
            {"category": "dispute.neighbour", "citizen_number": "13600136444"},
            token,
        )
        assert status == 201, view
        handoff_id = view["id"]

        async def queued() -> Any:
            _, text = await hotline.bridge.request("GET", "/metrics")
            return _metric(text, "hotline_handoff_outbox_depth") >= 1

        await poll(queued, within=5)
        await asyncio.sleep(1.0)  # several failed pushes meanwhile (retry_initial_s 0.2 s)
        _, text = await hotline.bridge.request("GET", "/metrics")
        assert _metric(text, "hotline_handoff_outbox_depth") >= 1
    finally:
        t0 = time.monotonic()
        await asyncio.to_thread(police.bridge.restart)
    sup = police.supervisor()

    async def arrived() -> Any:
        st, _ = await police.bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=sup)
        return st == 200

    await poll(arrived, within=10)
    REPORT["partner down: 110 bridge healthy->record arrived (s)"] = round(time.monotonic() - t0, 3)

    async def drained() -> Any:
        _, text = await hotline.bridge.request("GET", "/metrics")
        return _metric(text, "hotline_handoff_outbox_depth") == 0

    await poll(drained, within=10)
    await asyncio.sleep(1.0)  # any duplicate push would land meanwhile
    status, page = await police.bridge.request("GET", "/v1/handoffs?limit=200", token=sup)
    assert status == 200, page
    assert [r["id"] for r in page["items"]].count(handoff_id) == 1


async def test_110_files_an_sms_complaint_to_12345_and_sees_it_handled(
    two_sites: TwoSites,
) -> None:
    """110 received a 12345 matter by SMS: it files a work order, which reaches 12345; the
    12345 agent's sign-off (签收), progress and closing flow back to 110's copy."""
    hotline, police = two_sites.hotline, two_sites.police
    _, police_token = police.agent()
    status, view = await police.bridge.request(
        "POST",
        "/v1/work-orders",
        {
            "channel": "sms",
            "category": "gov.complaint_department",
            "citizen_number": "13600136555",
            "narrative": "短信投诉:某部门窗口办事推诿",
        },
        police_token,
    )
    assert status == 201, view
    handoff_id = view["id"]
    assert view["handoff"]["snapshot"]["channel"] == "sms"
    _, hotline_token = hotline.agent()

    async def arrived() -> Any:
        st, rec = await hotline.bridge.request(
            "GET", f"/v1/handoffs/{handoff_id}", token=hotline.supervisor()
        )
        return rec if st == 200 else None

    record = await poll(arrived, within=10)
    assert record["snapshot"]["direction"] == "110->12345"
    for body in (
        {"kind": "acknowledged"},
        {"kind": "status_changed", "status": "in_progress"},
        {"kind": "closed", "outcome": "已转区政府督办,部门已整改"},
    ):
        st, answer = await hotline.bridge.request(
            "POST", f"/v1/handoffs/{handoff_id}/events", body, hotline_token
        )
        assert st == 201, (body, answer)

    async def closed_at_110() -> Any:
        st, rec = await police.bridge.request(
            "GET", f"/v1/handoffs/{handoff_id}", token=police.supervisor()
        )
        return rec if st == 200 and rec["state"]["status"] == "closed" else None

    record = await poll(closed_at_110, within=10)
    kinds = [e["kind"] for e in record["events"]]
    assert kinds.count("acknowledged") == 1 and kinds.count("closed") == 1
    assert all(
        e["actor"]["kind"] == "partner"
        for e in record["events"]
        if e["kind"] in ("acknowledged", "status_changed", "closed")
    )


async def test_a_push_with_a_bad_signature_is_refused_and_nothing_is_stored(
    two_sites: TwoSites,
) -> None:
    police = two_sites.police
    handoff_id = "h-0000000000000000000000bad1"
    body = json.dumps(
        {"kind": "handoff.created", "handoff_id": handoff_id, "payload": {"id": handoff_id}}
    ).encode()
    req = urllib.request.Request(police.bridge.base_url + PUSH_PATH, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    for key, value in {
        "X-Hotline-Key-Id": "k-12345-to-110",
        "X-Hotline-Timestamp": str(int(time.time())),
        "X-Hotline-Nonce": "0123456789abcdef",
        "X-Hotline-Signature": "0" * 64,
    }.items():
        req.add_header(key, value)
    assert await asyncio.to_thread(_status_of, req) == 401
    st, _ = await police.bridge.request(
        "GET", f"/v1/handoffs/{handoff_id}", token=police.supervisor()
    )
    assert st == 404


def _status_of(req: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


# -- the agent console on both sites (issue 11) ---------------------------------------------------


async def test_two_sites_the_110_page_pops_the_record_while_its_phone_rings_and_its_ack_comes_back(
    two_sites: TwoSites, peers: Peers
) -> None:
    """12345's agent hands the citizen to 110 from the page; at 110 the agent's phone is a real
    softphone (baresip) that rings until picked up by hand: its page shows the record first."""
    need_browser()
    number = "13800138032"
    hotline, police = two_sites.hotline, two_sites.police
    await peers.hotline.agents()
    (agent110,) = police.topology["agents"]
    phone110 = Softphone(
        peers.police.workdir, agent110["endpoint"], agent110["sip_port"], 5556, answer="manual"
    )
    await phone110.start()
    try:
        async with chromium() as browser:
            a_id, a_token = hotline.agent()
            page12345 = await console_page(browser, hotline.bridge.base_url, a_id, a_token)
            page110 = await console_page(
                browser, police.bridge.base_url, agent110["id"], agent110["token"]
            )
            await page110.click("#lang")  # the 110 desk's agent reads English, say
            await peers.hotline.citizen(number)
            await page12345.wait_for_selector("#call-info", state="visible", timeout=20_000)
            assert await page12345.text_content("#call-number") == number
            await page12345.select_option("#target", "110")
            await page12345.select_option("#f-category", "police.criminal")
            await page12345.fill("#f-place", "玉龙县白沙镇")
            await page12345.fill("#f-request", "请110出警")
            await page12345.keyboard.press("F2")

            # At 110: the record pops while the phone still rings.
            await page110.wait_for_selector("#pop", state="visible", timeout=20_000)
            assert phone110.ringing()
            assert (
                "Call answered" not in phone110.log() and "call established" not in phone110.log()
            )
            assert await page110.text_content("#pop-place") == "玉龙县白沙镇"
            assert await page110.text_content("#pop-request") == "请110出警"
            handoff_id = await page110.text_content("#pop-id")
            await shot(page110, "console-screen-pop.png")
            await phone110.accept()
            await page12345.wait_for_selector("#progress[data-state='answered']", timeout=20_000)

            # 签收 at 110, by key; it reaches the 12345 agent's page.
            await page110.keyboard.press("F9")
            await page110.wait_for_selector("#pop-status:text-is('acknowledged')")
            await page12345.wait_for_selector(
                "#partner-news[data-event='acknowledged']", timeout=20_000
            )
            news = await page12345.text_content("#partner-news") or ""
            assert handoff_id and handoff_id in news and "已签收" in news
            await shot(page12345, "console-acknowledged.png")
    finally:
        await phone110.stop()
