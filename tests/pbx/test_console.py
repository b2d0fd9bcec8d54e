"""The agent console in a real browser against the real bridge and the real PBX.

Single site: the page shows the call when the queue bridges it, the agent fills the form and
presses F2, the page follows the carry transfer to "answered" while the SIPp 110 desk checks the
citizen's number in From/P-Asserted-Identity. Two sites: the 110 agent's page pops the incoming
record while that agent's phone (baresip, answering by hand) still rings; its 签收 reaches the
12345 agent's page (that one is in test_two_site.py, beside its fixtures). ``HOTLINE_CONSOLE_SHOTS=docs`` also writes the README's screenshots.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from lab.bridge import RunningBridge
from lab.sipp import SippProcess

from tests.browser import chromium, need_browser
from tests.pbx.waiting import eventually

from .conftest import Parties

pytestmark = pytest.mark.pbx

SHOTS = os.environ.get("HOTLINE_CONSOLE_SHOTS")


async def shot(page: Any, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / name), full_page=True)  # makes the folder


async def console_page(browser: Any, base_url: str, agent: str, token: str) -> Any:
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    await page.goto(f"{base_url}/console")
    await page.fill("#login-agent", agent)
    await page.fill("#login-token", token)
    await page.press("#login-token", "Enter")
    # Selectors, not wait_for_function: the page's CSP forbids the eval that polling needs.
    await page.wait_for_selector(f"#who:text-is('{agent}')")
    await page.wait_for_selector("#link[data-state='open']")  # its live stream is connected
    return page


async def test_the_console_shows_the_call_and_follows_its_carry_transfer_to_110(
    bridge: RunningBridge, parties: Parties
) -> None:
    need_browser()
    number = "13800138031"
    a1, a2 = parties.topology["agents"]
    phone = SippProcess(
        "agent_uas.xml",
        port=a1["sip_port"],
        local_ip=a1["sip_host"],
        workdir=parties.workdir,
        name=a1["endpoint"],
    )
    parties.procs.append(await phone.start())
    await parties.busy(a2)
    partner = await parties.partner(citizen=number)
    async with chromium() as browser:
        page = await console_page(browser, bridge.base_url, a1["id"], a1["token"])
        await parties.citizen(number)
        await page.wait_for_selector("#call-info", state="visible", timeout=20_000)
        assert await page.text_content("#call-number") == number
        assert await page.text_content("#call-jurisdiction") == "gucheng"  # the entry hook's

        await page.select_option("#f-category", "police.criminal")
        await page.wait_for_selector("#advice:not(:empty)")
        await page.fill("#f-place", "古城区七一街")
        await page.fill("#f-event", "入室盗窃")
        await page.check("#f-danger")
        await shot(page, "console-call.png")
        await page.keyboard.press("F2")
        await page.wait_for_selector("#progress[data-state='answered']", timeout=20_000)
        assert "对方已接听" in (await page.text_content("#progress") or "")
        await shot(page, "console-answered.png")

    (invite,) = partner.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("From")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    handoff_id = invite.header("X-Handoff-Id")
    sup = next(c["token"] for c in bridge.topology["api_clients"] if c["role"] == "supervisor")
    status, rec = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=sup)
    assert status == 200, rec
    assert rec["snapshot"]["content"]["place"] == "古城区七一街"
    assert rec["snapshot"]["matter"]["danger_to_life"] is True
    await eventually(lambda: bool(phone.snapshot().received("BYE")), "the agent's leg ended")
