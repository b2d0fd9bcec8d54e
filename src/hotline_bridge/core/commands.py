"""PBX commands as data: what a state transition asks the PBX to do.

Transitions in ``transfers.machine`` and ``conferences.machine`` never talk to Asterisk; they
return these values. ``interpreter`` is the one place that turns them into AMI actions, and it
reports each outcome back as a :class:`CommandResult` so the machine decides what happens next.
Every command carries ``ref``, the id of the transfer or conference that issued it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SetVar:
    ref: str
    channel: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class SetGlobal:
    """Set a dialplan global variable (AMI ``Setvar`` without a channel): a switch the
    dialplan reads for every new call, e.g. overflow to remote seats."""

    ref: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class BlindTransfer:
    """Send the bridged peer of ``channel`` (the agent's channel) to ``context,exten``."""

    ref: str
    channel: str
    context: str
    exten: str


@dataclass(frozen=True, slots=True)
class Redirect:
    ref: str
    channel: str
    context: str
    exten: str
    extra_channel: str | None = None
    extra_exten: str | None = None


@dataclass(frozen=True, slots=True)
class Originate:
    """Call ``dial`` and put the answered channel into ``application(data)``.

    ``channel_id`` fixes the new channel's Uniqueid, so its events can be matched to ``ref``
    without guessing.
    """

    ref: str
    dial: str
    application: str
    data: str
    caller_id: str
    timeout_s: int
    channel_id: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallOut:
    """Call ``dial`` and run the answered channel through ``context,exten`` of the dialplan
    (an automated call that asks something, e.g. the 回访 rating); like :class:`Originate`,
    ``channel_id`` fixes the new channel's Uniqueid."""

    ref: str
    dial: str
    context: str
    exten: str
    caller_id: str
    timeout_s: int
    channel_id: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConfbridgeKick:
    ref: str
    conference: str
    channel: str


@dataclass(frozen=True, slots=True)
class Hangup:
    ref: str
    channel: str


Command = (
    SetVar | SetGlobal | BlindTransfer | Redirect | Originate | CallOut | ConfbridgeKick | Hangup
)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How the PBX answered one command (fed back into the machine that issued it)."""

    command: Command
    ok: bool
    reason: str = ""
    # True when the reply was lost (timeout, link drop): the PBX may or may not have acted.
    unknown: bool = False
