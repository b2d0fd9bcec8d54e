"""The live call model: which agent is talking to which citizen, in which bridge, since when.

Pure and synchronous. It is fed AMI events (as plain mappings) in arrival order and keys
everything on Uniqueid, never on channel names, which restart from ``-00000000`` after an
Asterisk restart. After a reconnect the model is cleared and rebuilt from ``CoreShowChannel``
events, which carry the same fields as the live events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from hotline_bridge.core.events import PbxEvent


@dataclass(frozen=True, slots=True)
class Channel:
    uniqueid: str
    linkedid: str
    name: str
    endpoint: str  # PJSIP endpoint id, or "" for Local and other channels
    caller_num: str
    state: str
    bridge_id: str
    created_at: float
    bridged_at: float | None = None


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A citizen talking to an agent. ``call_id`` is the citizen channel's Uniqueid."""

    call_id: str
    citizen_number: str
    citizen_channel: str
    agent_id: str
    agent_channel: str
    agent_uniqueid: str
    bridge_id: str
    linkedid: str
    since: float


def endpoint_of(channel_name: str) -> str:
    """``PJSIP/agent1001-0000002a`` → ``agent1001``; anything but PJSIP → ``""``."""
    tech, _, rest = channel_name.partition("/")
    if tech != "PJSIP" or not rest:
        return ""
    endpoint, sep, _seq = rest.rpartition("-")
    return endpoint if sep else rest


# An Asterisk Uniqueid: [systemname-]epoch.sequence, the sequence counting channels since start.
_UNIQUEID = re.compile(r"(?:(.*)-)?(\d+)\.(\d+)")


def created_after(uniqueid: str, other: str) -> bool:
    """Whether channel ``uniqueid`` was created after ``other`` on the same PBX, by their
    Uniqueids (epoch, then sequence). False when that cannot be told: different systems or
    not Uniqueids at all."""
    a, b = _UNIQUEID.fullmatch(uniqueid), _UNIQUEID.fullmatch(other)
    if a is None or b is None or a[1] != b[1]:
        return False
    return (int(a[2]), int(a[3])) > (int(b[2]), int(b[3]))


class CallModel:
    """Channels by Uniqueid and the bridges they sit in."""

    def __init__(
        self, agent_endpoints: Mapping[str, str], partner_endpoints: Iterable[str] = ()
    ) -> None:
        self._agent_by_endpoint = dict(agent_endpoints)
        self._endpoint_by_agent = {a: e for e, a in self._agent_by_endpoint.items()}
        self._partner_endpoints = frozenset(partner_endpoints)
        self.channels: dict[str, Channel] = {}
        self._bridges: dict[str, set[str]] = {}

    # -- feeding ---------------------------------------------------------------------------

    def apply(self, event: PbxEvent, now: float) -> None:
        """Apply one AMI event. Safe to call twice with the same event."""
        name = event.get("Event", "")
        uid = event.get("Uniqueid", "")
        if not uid:
            return
        if name in ("Newchannel", "CoreShowChannel"):
            self._upsert(event, now)
            if name == "CoreShowChannel" and event.get("BridgeId"):
                self._enter(uid, event.get("BridgeId"), now)
        elif name == "Hangup":
            self._leave(uid)
            self.channels.pop(uid, None)
        elif name == "BridgeEnter":
            if uid not in self.channels:
                self._upsert(event, now)
            self._enter(uid, event.get("BridgeUniqueid", ""), now)
        elif name == "BridgeLeave":
            self._leave(uid)
        elif name in ("Newstate", "NewCallerid", "NewConnectedLine"):
            chan = self.channels.get(uid)
            if chan is not None:
                self.channels[uid] = replace(
                    chan,
                    state=event.get("ChannelStateDesc", chan.state),
                    caller_num=event.get("CallerIDNum", chan.caller_num),
                    name=event.get("Channel", chan.name),
                )

    def clear(self) -> None:
        self.channels.clear()
        self._bridges.clear()

    def _upsert(self, event: PbxEvent, now: float) -> None:
        uid = event.get("Uniqueid")
        old = self.channels.get(uid)
        chan_name = event.get("Channel", old.name if old else "")
        self.channels[uid] = Channel(
            uniqueid=uid,
            linkedid=event.get("Linkedid", uid),
            name=chan_name,
            endpoint=endpoint_of(chan_name),
            caller_num=event.get("CallerIDNum", old.caller_num if old else ""),
            state=event.get("ChannelStateDesc", old.state if old else ""),
            bridge_id=old.bridge_id if old else "",
            created_at=old.created_at if old else now,
            bridged_at=old.bridged_at if old else None,
        )

    def _enter(self, uid: str, bridge_id: str, now: float) -> None:
        chan = self.channels.get(uid)
        if chan is None or not bridge_id:
            return
        if chan.bridge_id == bridge_id:
            return  # duplicate event
        self._leave(uid)
        self.channels[uid] = replace(chan, bridge_id=bridge_id, bridged_at=now)
        self._bridges.setdefault(bridge_id, set()).add(uid)

    def _leave(self, uid: str) -> None:
        chan = self.channels.get(uid)
        if chan is None or not chan.bridge_id:
            return
        members = self._bridges.get(chan.bridge_id)
        if members is not None:
            members.discard(uid)
            if not members:
                del self._bridges[chan.bridge_id]
        self.channels[uid] = replace(chan, bridge_id="", bridged_at=None)

    # -- questions -------------------------------------------------------------------------

    def role_of(self, chan: Channel) -> str:
        if chan.endpoint in self._agent_by_endpoint:
            return "agent"
        if chan.endpoint in self._partner_endpoints:
            return "partner"
        return "citizen" if chan.endpoint else "other"

    def bridge_members(self, bridge_id: str) -> list[Channel]:
        return [self.channels[u] for u in self._bridges.get(bridge_id, ()) if u in self.channels]

    def live_calls(self) -> list[LiveCall]:
        calls = []
        for bridge_id in self._bridges:
            call = self._call_in(bridge_id)
            if call is not None:
                calls.append(call)
        return sorted(calls, key=lambda c: c.since)

    def call_of_agent(self, agent_id: str) -> LiveCall | None:
        """The agent's current call: the most recently bridged one. Right after a new call is
        answered the previous one may still be in the model (its hang-up not yet read): a key
        must act on the call the agent is on now, never on that one."""
        endpoint = self._endpoint_by_agent.get(agent_id)
        if endpoint is None:
            return None
        current: LiveCall | None = None
        for chan in self.channels.values():
            if chan.endpoint == endpoint and chan.bridge_id:
                call = self._call_in(chan.bridge_id)
                if (
                    call is not None
                    and call.agent_uniqueid == chan.uniqueid
                    and (current is None or call.since >= current.since)
                ):
                    current = call
        return current

    def call_of_agent_channel(self, uniqueid: str) -> LiveCall | None:
        """The call whose agent leg is this channel (a key dialled on the agent's phone)."""
        chan = self.channels.get(uniqueid)
        if chan is None or not chan.bridge_id:
            return None
        call = self._call_in(chan.bridge_id)
        return call if call is not None and call.agent_uniqueid == uniqueid else None

    def peers_of_agent(self, agent_id: str) -> list[Channel]:
        """The channels bridged with the agent's channel (any role): e.g. the partner platform's
        leg of a call it handed to us, which is no ``LiveCall`` (no citizen channel here)."""
        endpoint = self._endpoint_by_agent.get(agent_id)
        if endpoint is None:
            return []
        for chan in self.channels.values():
            if chan.endpoint == endpoint and chan.bridge_id:
                members = self.bridge_members(chan.bridge_id)
                return sorted(
                    (c for c in members if c.uniqueid != chan.uniqueid),
                    key=lambda c: c.created_at,
                )
        return []

    def call(self, call_id: str) -> LiveCall | None:
        chan = self.channels.get(call_id)
        if chan is None or not chan.bridge_id:
            return None
        call = self._call_in(chan.bridge_id)
        return call if call is not None and call.call_id == call_id else None

    def _call_in(self, bridge_id: str) -> LiveCall | None:
        """A call is a bridge holding exactly one agent and exactly one citizen (partners aside)."""
        members = self.bridge_members(bridge_id)
        agents = [c for c in members if self.role_of(c) == "agent"]
        citizens = [c for c in members if self.role_of(c) == "citizen"]
        if len(agents) != 1 or len(citizens) != 1:
            return None
        agent, citizen = agents[0], citizens[0]
        return LiveCall(
            call_id=citizen.uniqueid,
            citizen_number=citizen.caller_num,
            citizen_channel=citizen.name,
            agent_id=self._agent_by_endpoint[agent.endpoint],
            agent_channel=agent.name,
            agent_uniqueid=agent.uniqueid,
            bridge_id=bridge_id,
            linkedid=citizen.linkedid,
            since=max(agent.bridged_at or 0.0, citizen.bridged_at or 0.0),
        )
