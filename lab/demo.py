"""``make demo``: the product in one minute, on the sandbox PBX, with real SIP.

1. A SIPp citizen calls 12345, a SIPp agent answers from the queue, the agent presses the
   carry-transfer hotkey (HTTP API), and the SIPp 110 desk shows what it received: the citizen's
   own number in From and P-Asserted-Identity, the handoff id and the record URL.
2. Another citizen, the three-way hotkey: citizen, agent and 110 in one room; the agent leaves
   and citizen and 110 go on talking.

Everything it starts (SIPp peers, the bridge, the PBX if it was not running) is stopped at the
end. Exit status 0 only if every step happened as described.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .ami import AmiSession
from .bridge import RunningBridge, start_bridge
from .calls import agent_uas, citizen_uac, hang_up_leftovers, partner_uas
from .sandbox import DEFAULT_TOPOLOGY, REPO, Sandbox
from .sipp import SippProcess, stop_all

CARRY_CITIZEN = "13800138000"
THREE_WAY_CITIZEN = "13900139000"


class DemoFailed(Exception):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def check(ok: bool, what: str) -> None:
    say(f"   {'ok ' if ok else 'FAIL'} {what}")
    if not ok:
        raise DemoFailed(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, sandbox: Sandbox, bridge: RunningBridge, ami: AmiSession, workdir: Path):
        self.sandbox = sandbox
        self.topology = sandbox.topology
        self.bridge = bridge
        self.ami = ami
        self.workdir = workdir

    async def parties(
        self, number: str, name: str
    ) -> tuple[list[SippProcess], SippProcess, SippProcess]:
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        agents = agent_uas(self.topology, workdir)
        for a in agents:
            await a.start()
        partner = partner_uas(self.topology, workdir, variables={"citizen": number})
        await partner.start()
        citizen = citizen_uac(self.topology, workdir, hold=60, number=number)
        await citizen.start(settle=0)
        return agents, partner, citizen

    async def answered_call(self, number: str) -> tuple[str, dict[str, Any]]:
        say(f"   citizen {number} dials {self.topology['citizens']['dial_number']} ...")
        agent_id, call = await self.bridge.wait_for_call()
        say(f"   agent {agent_id} answered from the queue (call {call['call_id']})")
        check(call["citizen_number"] == number, "the agent's call shows the citizen's number")
        return agent_id, call

    def show_invite(self, partner: SippProcess, number: str, handoff_id: str) -> None:
        invites = partner.snapshot().received("INVITE")
        check(len(invites) == 1, "the 110 desk received exactly one INVITE")
        inv = invites[0]
        say("   the INVITE that reached 110 carried:")
        for header in ("From", "P-Asserted-Identity", "X-Handoff-Id", "Call-Info", "Diversion"):
            say(f"     {header}: {inv.header(header)}")
        for value in inv.header_all("History-Info"):
            say(f"     History-Info: {value}")
        check(f"<sip:{number}@" in inv.header("From"), "From is the citizen's own number")
        check(
            f"<sip:{number}@" in inv.header("P-Asserted-Identity"),
            "P-Asserted-Identity is the citizen's own number",
        )
        check(inv.header("X-Handoff-Id") == handoff_id, "X-Handoff-Id names the handoff record")
        check(f"/v1/handoffs/{handoff_id}>" in inv.header("Call-Info"), "Call-Info links it")

    async def show_record(self, handoff_id: str, token: str) -> None:
        status, record = await self.bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
        check(status == 200, f"the handoff record {handoff_id} is stored")
        snap = record["snapshot"]
        say(f"   record {handoff_id}: {snap['kind']} {snap['direction']}, target {snap['target']}")
        for event in record["events"]:
            what = event.get("data", {}).get("what", "")
            say(f"     {event['at']}  {event['kind']} {what}".rstrip())

    async def carry_transfer(self) -> None:
        say("1. One-key carry-number transfer 12345 -> 110")
        number = CARRY_CITIZEN
        procs = await self.parties(number, "carry")
        try:
            agent_id, _call = await self.answered_call(number)
            token = self.bridge.token(agent_id)
            t0 = time.monotonic()
            status, body = await self.bridge.request(
                "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token
            )
            check(status == 202, f"hotkey accepted: {body}")
            transfer = await self.bridge.wait_state(
                f"/v1/transfers/{body['transfer_id']}", token, {"answered", "returned"}
            )
            elapsed = (time.monotonic() - t0) * 1000
            say(f"   transfer {transfer['transfer_id']}: {transfer['state']} in {elapsed:.0f} ms")
            for entry in transfer["timeline"]:
                say(f"     +{(entry['at'] - transfer['timeline'][0]['at']) * 1000:7.1f} ms  "
                    f"{entry['what']} {entry['detail']}")  # fmt: skip
            check(transfer["outcome"] == "answered", "110 answered the citizen")
            self.show_invite(procs[1], number, body["handoff_id"])
            chans = await self.channels()
            check(
                chans.get("PJSIP/carrier", {}).get("BridgeId", "")
                == chans.get("PJSIP/partner-110", {}).get("BridgeId", "-"),
                "citizen and 110 are bridged",
            )
            check(f"PJSIP/agent{agent_id}" not in chans, "the agent's leg was released")
            await self.show_record(body["handoff_id"], token)
        finally:
            await self.cleanup(procs)

    async def three_way(self) -> None:
        say("2. Three-way call citizen + 12345 + 110, then the agent leaves")
        number = THREE_WAY_CITIZEN
        procs = await self.parties(number, "three-way")
        try:
            agent_id, _call = await self.answered_call(number)
            token = self.bridge.token(agent_id)
            status, body = await self.bridge.request(
                "POST", f"/v1/agents/{agent_id}/three-way", {"target": "110"}, token
            )
            check(status == 202, f"hotkey accepted: {body}")
            conf_id = body["conference_id"]
            await self.bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"active"})
            members = await self.room(conf_id)
            say(f"   room {conf_id}: {', '.join(sorted(members))}")
            check(len(members) == 3, "ConfBridge lists 3 members")
            self.show_invite(procs[1], number, body["handoff_id"])
            status, _ = await self.bridge.request(
                "POST", f"/v1/conferences/{conf_id}/leave", {}, token
            )
            check(status == 202, "the agent pressed leave")
            await self.bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"agent_left"})
            await asyncio.sleep(0.5)
            members = await self.room(conf_id)
            say(f"   room {conf_id}: {', '.join(sorted(members))}")
            check(
                sorted(members) == ["PJSIP/carrier", "PJSIP/partner-110"],
                "citizen and 110 keep talking without the agent",
            )
            await self.show_record(body["handoff_id"], token)
        finally:
            await self.cleanup(procs)

    async def channels(self) -> dict[str, dict[str, Any]]:
        events = await self.ami.action_list("CoreShowChannels")
        return {
            str(e["Channel"]).rsplit("-", 1)[0]: dict(e)
            for e in events
            if e.get("Event") == "CoreShowChannel"
        }

    async def room(self, conf_id: str) -> list[str]:
        members = await self.ami.action_list("ConfbridgeList", Conference=conf_id)
        return [
            str(m["Channel"]).rsplit("-", 1)[0]
            for m in members
            if m.get("Event") == "ConfbridgeList"
        ]

    async def cleanup(self, procs: tuple[list[SippProcess], SippProcess, SippProcess]) -> None:
        agents, partner, citizen = procs
        await hang_up_leftovers(self.ami)
        await stop_all(citizen, partner, *agents)


async def run(topology_path: Path) -> int:
    sandbox = Sandbox(topology_path)
    say(f"sandbox PBX: starting from {topology_path} (provisions Asterisk 22 on first use) ...")
    started_pbx = await asyncio.to_thread(sandbox.start)
    workdir = REPO / ".sandbox" / str(sandbox.topology["pbx"]["site"]) / "demo"
    bridge: RunningBridge | None = None
    try:
        bridge = await asyncio.to_thread(
            start_bridge, topology_path, sandbox.topology, workdir / "bridge", port=free_port()
        )
        say(f"hotline-bridge: serving {bridge.base_url}, log {bridge.log_path}")
        async with sandbox.admin_ami() as ami:
            await hang_up_leftovers(ami)
            demo = Demo(sandbox, bridge, ami, workdir)
            steps: list[Callable[[], Awaitable[None]]] = [demo.carry_transfer, demo.three_way]
            for step in steps:
                say()
                await step()
        say()
        say("demo: every step happened as described.")
        return 0
    except (DemoFailed, Exception) as exc:
        say(f"\ndemo FAILED: {type(exc).__name__}: {exc}")
        if bridge is not None:
            say(f"(bridge log: {bridge.log_path}; SIPp traces under {workdir})")
        return 1
    finally:
        if bridge is not None:
            bridge.stop()
        if started_pbx:
            await asyncio.to_thread(sandbox.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args.topology))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
