"""The agent console in a real browser (Debian's Chromium via Playwright) against the real app:
login swaps the token for an HttpOnly SameSite=Strict cookie, CSRF is refused, the live call
and its entry-hook facts show, the form reaches the record, keys work from the keyboard, the
screen pop's 签收 is recorded, and the page speaks Chinese or English."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lab.sandbox import bridge_settings

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import HandoffInput, new_handoff
from hotline_bridge.handoffs.model import Actor, Direction, HandoffKind
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import CallEntry, HandoffFilter, PageRequest, SqliteHandoffStore
from hotline_bridge.runtime.app import Runtime, build
from tests.browser import chromium, need_browser

TOPOLOGY = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
TOKEN = "sandbox-token-agent-1001"
NUMBER = "13800138000"


@dataclass
class Console:
    client: TestClient[Any, Any]
    runtime: Runtime
    store: SqliteHandoffStore

    def url(self, path: str = "/console") -> str:
        return str(self.client.make_url(path))

    def feed(self, *events: dict[str, str]) -> None:
        for e in events:
            self.runtime.switchboard.on_event(e)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    need_browser()
    settings = bridge_settings(TOPOLOGY)
    store = SqliteHandoffStore(tmp_path / "handoffs.sqlite3")
    recorder = StoreRecorder(
        store, load_catalog(), site=Platform.HOTLINE_12345, public_url="http://127.0.0.1:8345"
    )
    runtime = build(settings, recorder)
    runtime.app.cleanup_ctx.clear()
    runtime.switchboard.calls.pbx_ready = True  # the AMI link itself is the PBX tests' business
    async with TestClient(TestServer(runtime.app, host="127.0.0.1")) as client:
        yield Console(client, runtime, store)
    store.close()


def ev(name: str, uid: str, chan: str, **kw: str) -> dict[str, str]:
    return {"Event": name, "Uniqueid": uid, "Linkedid": "1.1", "Channel": chan, **kw}


def answered(uid: str = "1.1") -> list[dict[str, str]]:
    """A citizen's call bridged to agent 1001 by the queue, as AMI tells it."""
    agent_uid = uid + "0"
    return [
        ev("Newchannel", uid, "PJSIP/carrier-00000001", CallerIDNum=NUMBER),
        ev("Newchannel", agent_uid, "PJSIP/agent1001-00000002", CallerIDNum=NUMBER),
        ev("BridgeEnter", uid, "PJSIP/carrier-00000001", BridgeUniqueid="b1"),
        ev("BridgeEnter", agent_uid, "PJSIP/agent1001-00000002", BridgeUniqueid="b1"),
        {
            "Event": "AgentConnect",
            "Uniqueid": uid,
            "DestChannel": "PJSIP/agent1001-00000002",
            "CallerIDNum": NUMBER,
            "Queue": "hotline-12345",
            "HoldTime": "2",
        },
    ]


async def logged_in(browser: Any, console: Console) -> Any:
    page = await browser.new_page()
    await page.goto(console.url())
    await page.fill("#login-agent", "1001")
    await page.fill("#login-token", TOKEN)
    await page.press("#login-token", "Enter")
    await page.wait_for_selector("#desk", state="visible")
    await page.wait_for_selector("#link[data-state='open']")  # its live stream is connected
    return page


async def test_login_swaps_the_token_for_a_strict_httponly_cookie(console: Console) -> None:
    async with chromium() as browser:
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(console.url())
        assert await page.title() == "坐席台"  # Chinese by default
        await page.fill("#login-agent", "1001")
        await page.fill("#login-token", "wrong-token-0000000")
        await page.click("#login button[type=submit]")
        await page.wait_for_selector("#login-error:not(:empty)")
        assert await page.text_content("#login-error") == "工号或令牌错误"
        await page.fill("#login-token", TOKEN)
        await page.press("#login-token", "Enter")
        await page.wait_for_selector("#desk", state="visible")
        assert await page.title() == "12345 坐席台"  # the site it serves
        (cookie,) = await page.context.cookies()
        assert cookie["name"] == "hb_console"
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert TOKEN not in cookie["value"]
        # The page keeps no token: not in the field, not in storage, not readable as a cookie.
        assert await page.input_value("#login-token") == ""
        stored = await page.evaluate(
            "JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
        )
        assert TOKEN not in stored
        assert await page.evaluate("document.cookie") == ""
        # A reload stays logged in (the cookie), and logging out ends the session.
        await page.reload()
        await page.wait_for_selector("#desk", state="visible")
        await page.click("#logout")
        await page.wait_for_selector("#login", state="visible")
        assert await page.context.cookies() == []


async def test_a_cookie_without_the_console_header_or_from_another_origin_is_refused(
    console: Console,
) -> None:
    c = console.client
    login = await c.post("/v1/console/session", json={"agent": "1001", "token": TOKEN})
    assert login.status == 201
    assert (
        "HttpOnly" in login.headers["Set-Cookie"]
        and "SameSite=Strict" in login.headers["Set-Cookie"]
    )
    console.feed(*answered())
    body = {"target": "110"}
    plain = await c.post("/v1/agents/1001/carry-transfer", json=body)
    assert plain.status == 403
    assert "X-Hotline-Console" in (await plain.json())["error"]["reason"]
    evil = await c.post(
        "/v1/agents/1001/carry-transfer",
        json=body,
        headers={"X-Hotline-Console": "1", "Origin": "http://evil.example"},
    )
    assert evil.status == 403
    assert console.runtime.switchboard.calls.claimed_by("1.1") is None  # nothing happened
    reads = await c.get("/v1/calls")  # reading needs no header: nothing changes
    assert reads.status == 200 and (await reads.json())["calls"][0]["citizen_number"] == NUMBER
    other = await c.post(
        "/v1/agents/1002/carry-transfer", json=body, headers={"X-Hotline-Console": "1"}
    )
    assert other.status == 403  # the session is agent 1001's, as its token was


async def test_the_call_the_form_the_advisor_and_a_key_from_the_keyboard(console: Console) -> None:
    console.store.open_call(
        CallEntry(
            call_id="1.1",
            arrived_at=datetime.now(UTC),
            kind="citizen",
            jurisdiction=Jurisdiction.YULONG,
            caller=NUMBER,
            nuisance=True,
        )
    )
    async with chromium() as browser:
        page = await logged_in(browser, console)
        await page.wait_for_selector("#who:text-is('1001')")
        console.feed(*answered())
        await page.wait_for_selector("#call-info", state="visible")
        assert await page.text_content("#call-number") == NUMBER
        assert await page.text_content("#call-jurisdiction") == "yulong"
        assert await page.text_content("#call-nuisance") == "是"

        # The form, by keyboard: the advisor speaks before any key is pressed.
        await page.focus("#f-category")
        await page.select_option("#f-category", "police.criminal")
        await page.wait_for_selector("#advice:not(:empty)")
        assert "110" in (await page.text_content("#advice") or "")
        await page.focus("#f-place")
        await page.keyboard.type("古城区七一街")
        await page.focus("#f-request")
        await page.keyboard.type("请民警到场")
        await page.keyboard.press("F2")  # carry transfer
        await page.wait_for_selector("#progress:has-text('110')")
        page_ = console.store.list(HandoffFilter(), PageRequest(limit=10))
        (rec,) = page_.items
        assert rec.snapshot.kind.value == "carry_transfer"
        assert rec.snapshot.content.place == "古城区七一街"
        assert rec.snapshot.content.request == "请民警到场"
        assert rec.snapshot.matter.category == "police.criminal"
        assert rec.snapshot.matter.jurisdiction.value == "yulong"

        # Fields the agent adds after the key are appended to the record as an event; the
        # snapshot sent at transfer time stays as it was.
        await page.fill("#f-people", "两名男子")
        await page.click("#f-append")
        await page.wait_for_selector("#append-status:text-is('已补充到工单')")
        after = console.store.get(rec.id)
        assert after is not None and after.snapshot == rec.snapshot
        (note,) = [e for e in after.events if e.kind.value == "note"]
        assert "人员: 两名男子" in note.data["text"] and "地点: 古城区七一街" in note.data["text"]

        # English on request; the key labels follow.
        await page.focus("#lang")
        await page.keyboard.press("Enter")
        assert await page.title() == "12345 agent console"
        assert "Carry transfer" in (await page.text_content("#key-carry") or "")


async def test_the_screen_pop_and_its_acknowledgement_by_key(console: Console) -> None:
    now = datetime.now(UTC)
    rec = new_handoff(
        HandoffInput(category="police.criminal", place="玉龙县", request="请12345跟进"),
        handoff_id=new_handoff_id(int(now.timestamp() * 1000)),
        kind=HandoffKind.CARRY_TRANSFER,
        direction=Direction.TO_12345,
        target="12345",
        citizen_number=NUMBER,
        created_by=Actor.agent("110-7"),
        catalog=load_catalog(),
        now=now,
    )
    console.store.create(rec, outbox=False)
    console.store.open_call(
        CallEntry(
            call_id="1.7",
            arrived_at=now,
            kind="from_partner",
            caller=NUMBER,
            handoff_id=rec.id,
            urgency="urgent",
        )
    )
    async with chromium() as browser:
        page = await logged_in(browser, console)
        console.feed(
            {
                "Event": "AgentCalled",
                "Uniqueid": "1.7",
                "DestChannel": "PJSIP/agent1001-00000009",
                "CallerIDNum": NUMBER,
                "Queue": "hotline-12345",
            }
        )
        await page.wait_for_selector("#pop", state="visible")
        assert await page.text_content("#pop-id") == rec.id
        assert await page.text_content("#pop-urgency") == "紧急"
        assert await page.text_content("#pop-place") == "玉龙县"
        await page.keyboard.press("F9")  # 签收
        await page.wait_for_selector("#pop-status:text-is('已签收')")
        stored = console.store.get(rec.id)
        assert stored is not None
        assert [e.kind.value for e in stored.events][-1] == "acknowledged"
