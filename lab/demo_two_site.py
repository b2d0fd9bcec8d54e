"""``make demo-two-site``: a 12345 PBX and a 110 PBX, each with its own bridge, on loopback.

A citizen calls 12345; the 12345 agent carries the call to 110 with one key. The demo shows what
the 110 agent's phone received (the citizen's own number), the record arriving at the 110
bridge through the signed partner link, the 110 agent's screen data, and the 110 agent's
签收 (acknowledgement) flowing back into the 12345 record. Stops everything it started; exit
status 0 only if every step happened.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .bridge import RunningBridge, start_bridge
from .calls import agent_uas, citizen_uac, hang_up_leftovers
from .demo import DemoFailed, check, say
from .sandbox import REPO, Sandbox
from .sipp import SippProcess, stop_all

TWO_SITE = REPO / "asterisk" / "two-site"
CITIZEN = "13800138000"


async def poll(fn: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (got := await fn()) is not None:
            return got
        await asyncio.sleep(0.02)
    raise DemoFailed(f"nothing after {within} s")


async def handoff(hotline: RunningBridge, police: RunningBridge, procs: list[SippProcess]) -> None:
    say("1. A citizen calls 12345 and the agent hands the call to 110 with one key")
    agent_id, call = await hotline.wait_for_call()
    say(f"   12345 agent {agent_id} answered citizen {call['citizen_number']}")
    token = hotline.token(agent_id)
    t0 = time.monotonic()
    status, body = await hotline.request(
        "POST",
        f"/v1/agents/{agent_id}/carry-transfer",
        {"target": "110", "handoff": {"category": "police.criminal", "danger_to_life": True}},
        token,
    )
    check(status == 202, f"hotkey accepted: {body}")
    handoff_id = body["handoff_id"]
    police_sup = str(police.topology["api_clients"][0]["token"])

    async def record_at_110() -> Any:
        st, rec = await police.request("GET", f"/v1/handoffs/{handoff_id}", token=police_sup)
        return rec if st == 200 else None

    await poll(record_at_110)
    say(f"   record {handoff_id} arrived at the 110 bridge {time.monotonic() - t0:.3f} s after")
    transfer = await hotline.wait_state(
        f"/v1/transfers/{body['transfer_id']}", token, {"answered", "returned"}, 20
    )
    check(transfer["state"] == "answered", "a 110 agent answered the citizen")

    police_agent = police.topology["agents"][0]
    invites = next(p for p in procs if p.name == police_agent["endpoint"]).snapshot()
    (invite,) = invites.received("INVITE")
    say(f"   the 110 agent's phone showed  From: {invite.header('From')}")
    check(f"<sip:{CITIZEN}@" in invite.header("From"), "110 sees the citizen's own number")

    p_token = str(police_agent["token"])

    async def screen_at_110() -> Any:
        st, screen = await police.request(
            "GET", f"/v1/agents/{police_agent['id']}/current-handoff", token=p_token
        )
        return screen if st == 200 else None

    try:
        screen = await poll(screen_at_110, within=5.0)
    except DemoFailed:
        screen = None
    check(
        screen is not None and screen["handoff_id"] == handoff_id, "the 110 agent's screen shows it"
    )
    say(f"   110 screen: urgency {screen['urgency']}, class "
        f"{screen['record']['snapshot']['matter']['matter_class']}")  # fmt: skip

    say("2. The 110 agent signs for it (签收); 12345 sees it")
    st, _ = await police.request(
        "POST", f"/v1/handoffs/{handoff_id}/events", {"kind": "acknowledged"}, p_token
    )
    check(st == 201, "签收 recorded at 110")
    t1 = time.monotonic()

    async def ack_at_12345() -> Any:
        st, rec = await hotline.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
        acks = [e for e in rec["events"] if e["kind"] == "acknowledged"] if st == 200 else []
        return acks[0] if acks else None

    ack = await poll(ack_at_12345)
    say(f"   12345 record: acknowledged at {ack['at']} by {ack['actor']['kind']} "
        f"{ack['actor']['id']} ({time.monotonic() - t1:.3f} s after the 签收)")  # fmt: skip


async def run() -> int:
    sandboxes = [Sandbox(TWO_SITE / f"{site}.toml") for site in ("12345", "110")]
    started: list[tuple[Sandbox, bool]] = []
    bridges: list[RunningBridge] = []
    procs: list[SippProcess] = []
    workdir = REPO / ".sandbox" / "two-site-demo"
    try:
        for sb in sandboxes:
            say(f"PBX {sb.topology['pbx']['site']}: starting ({sb.topology_path.name}) ...")
            started.append((sb, await asyncio.to_thread(sb.start)))
        for sb in sandboxes:
            site = str(sb.topology["pbx"]["site"])
            bridge = await asyncio.to_thread(
                start_bridge, sb.topology_path, sb.topology, workdir / f"bridge-{site}"
            )
            bridges.append(bridge)
            say(f"bridge {site}: {bridge.base_url}")
        hotline_sb, police_sb = sandboxes
        for sb in (police_sb, hotline_sb):
            for agent in agent_uas(sb.topology, workdir / "sipp"):
                procs.append(await agent.start())
        citizen = citizen_uac(hotline_sb.topology, workdir / "sipp", hold=60, number=CITIZEN)
        procs.append(await citizen.start(settle=0))
        say()
        await handoff(bridges[0], bridges[1], procs)
        say()
        say("demo-two-site: every step happened as described.")
        return 0
    except (DemoFailed, Exception) as exc:
        say(f"\ndemo-two-site FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        for sb, _ in started:
            async with sb.admin_ami() as ami:
                await hang_up_leftovers(ami)
        await stop_all(*reversed(procs))
        for bridge in bridges:
            await asyncio.to_thread(bridge.stop)
        for sb, was_started in reversed(started):
            if was_started:
                await asyncio.to_thread(sb.stop)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
