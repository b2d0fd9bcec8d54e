"""Building blocks for calls through the sandbox PBX: the SIPp peers of the topology, and waits
on AMI for the states a call goes through.

    agents = agent_uas(topology, tmp_path)            # one SippProcess per [[agents]] entry
    citizen = citizen_uac(topology, tmp_path, hold=20)
    for a in agents: await a.start()
    mark = ami.mark()
    await citizen.start(settle=0)
    pair = await wait_bridged(ami, since=mark)        # citizen + agent in one bridge
    await ami.action_ok("Hangup", Channel=pair.citizen)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ami import AmiSession, Message
from .sipp import CITIZENS_CSV, SippProcess

# The first line of sipp_scenarios/citizens.csv: the number a fresh citizen_uac presents first.
FIRST_CITIZEN = "13800138000"


def agent_uas(topology: dict[str, Any], workdir: Path, **kw: Any) -> list[SippProcess]:
    """A SIPp agent phone (agent_uas.xml) for every [[agents]] entry, on its own port."""
    return [
        SippProcess(
            "agent_uas.xml",
            port=a["sip_port"],
            local_ip=a["sip_host"],
            workdir=workdir,
            name=a["endpoint"],
            **kw,
        )
        for a in topology["agents"]
    ]


def citizen_uac(
    topology: dict[str, Any],
    workdir: Path,
    hold: float = 30,
    calls: int = 1,
    number: str | None = None,
    port: int | None = None,
    **kw: Any,
) -> SippProcess:
    """The citizen side (citizen_uac.xml): calls the hotline number from the carrier's address
    (or from ``port``, e.g. the [county_trunk]'s), presenting ``number`` (default: the numbers
    of sipp_scenarios/citizens.csv in turn)."""
    c, pbx = topology["citizens"], topology["pbx"]
    inf = CITIZENS_CSV
    if number is not None:
        inf = workdir / f"citizen-{number}.csv"
        inf.write_text(f"SEQUENTIAL\n{number};\n")
    return SippProcess(
        "citizen_uac.xml",
        port=port or c["sip_port"],
        local_ip=c["sip_host"],
        workdir=workdir,
        name=f"citizen-{number}" if number else "citizen",
        remote=f"{pbx['sip_host']}:{pbx['sip_port']}",
        service=c["dial_number"],
        calls=calls,
        inf=inf,
        hold=hold,
        **kw,
    )


def partner_uas(
    topology: dict[str, Any],
    workdir: Path,
    scenario: str = "partner_uas.xml",
    target: str = "110",
    **kw: Any,
) -> SippProcess:
    """The partner desk of [targets.<target>] running one of the partner_*.xml scenarios."""
    t = topology["targets"][target]
    return SippProcess(
        scenario,
        port=t["sip_port"],
        local_ip=t["sip_host"],
        workdir=workdir,
        name=Path(scenario).stem,
        **kw,
    )


def partner_uac(
    topology: dict[str, Any],
    workdir: Path,
    handoffs: list[tuple[str, str]],
    target: str = "110",
    hold: float = 30,
    **kw: Any,
) -> SippProcess:
    """The partner platform of [targets.<target>] handing calls TO this PBX (partner_uac.xml):
    one call per ``(citizen number, X-Handoff-Id)``, in order, from the partner endpoint's
    address, to the hotline number. Use an id such as ``"none"`` for a call without a record."""
    t, pbx, c = topology["targets"][target], topology["pbx"], topology["citizens"]
    inf = workdir / f"partner-uac-{t['sip_port']}.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(f"{n};{h};\n" for n, h in handoffs))
    return SippProcess(
        "partner_uac.xml",
        port=t["sip_port"],
        local_ip=t["sip_host"],
        workdir=workdir,
        name="partner-uac",
        remote=f"{pbx['sip_host']}:{pbx['sip_port']}",
        service=c["dial_number"],
        calls=len(handoffs),
        inf=inf,
        hold=hold,
        variables={"forwarder": t["number"], **kw.pop("variables", {})},
        **kw,
    )


@dataclass
class Bridged:
    citizen: str  # channel names
    agent: str
    bridge: str  # BridgeUniqueid
    at: float  # time.monotonic() of the later BridgeEnter


async def wait_bridged(
    ami: AmiSession,
    since: int = 0,
    timeout: float = 15.0,
    citizen_prefix: str = "PJSIP/carrier-",
    other_prefix: str = "PJSIP/agent",
) -> Bridged:
    """Wait until a citizen channel and another (agent) channel entered the same bridge
    (BridgeEnter events after `since`)."""
    deadline = time.monotonic() + timeout
    while True:
        by_bridge: dict[str, list[Message]] = {}
        for ev in ami.find_events(lambda e: e.get("Event") == "BridgeEnter", since):
            by_bridge.setdefault(ev["BridgeUniqueid"], []).append(ev)
        for bridge, evs in by_bridge.items():
            cz = [e for e in evs if e["Channel"].startswith(citizen_prefix)]
            other = [e for e in evs if e["Channel"].startswith(other_prefix)]
            if cz and other:
                return Bridged(
                    cz[0]["Channel"], other[0]["Channel"], bridge, max(cz[0]["_t"], other[0]["_t"])
                )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no {citizen_prefix}* and {other_prefix}* in one bridge within {timeout} s"
            )
        await asyncio.sleep(0.02)


def is_user_event(name: str, **fields: str) -> Any:
    """Predicate for the dialplan's UserEvents (Event: UserEvent, UserEvent: <name>)."""

    def pred(ev: Message) -> bool:
        return (
            ev.get("Event") == "UserEvent"
            and ev.get("UserEvent") == name
            and all(ev.get(k) == v for k, v in fields.items())
        )

    return pred


SANDBOX_PREFIXES = ("PJSIP/carrier-", "PJSIP/agent", "PJSIP/partner-", "PJSIP/duty-")


async def hang_up_leftovers(ami: AmiSession) -> list[str]:
    """Hang up calls of the sandbox's SIP peers left by an earlier, interrupted run (a killed
    SIPp never sends BYE, and with rtp_timeout=0 Asterisk keeps such a call forever)."""
    stale = [
        ch["Channel"]
        for ch in await ami.action_list("CoreShowChannels")
        if str(ch.get("Channel", "")).startswith(SANDBOX_PREFIXES)
    ]
    for name in stale:
        await ami.action("Hangup", Channel=name)
    if stale:
        await asyncio.sleep(0.5)
    return stale
