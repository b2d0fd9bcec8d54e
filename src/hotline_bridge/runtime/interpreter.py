"""The one place where commands (data) become AMI actions.

A batch of commands is written to AMI back to back without waiting for each reply: Asterisk
runs one manager session's actions in the order received, so ``Setvar`` x N then
``BlindTransfer`` keeps its order while costing one round trip instead of N + 1. With an AMI
edge's ``send_batch``, the whole batch leaves in ONE write, synchronously inside
:meth:`Interpreter.submit`: a hotkey's actions are on the wire before its HTTP answer, not an
event-loop turn or two after it (measured: that wait was most of what the bridge added to the
hotkey -> INVITE-at-110 time under load). Each reply comes back as a
:class:`~hotline_bridge.core.commands.CommandResult` to the ``on_result`` of the capability that
submitted the batch (see :meth:`Interpreter.submitter`), in command order.
Nothing is ever re-sent: a command whose reply was lost is reported as failed, and the machine
that issued it decides.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

import structlog

from hotline_bridge.ami import AmiDisconnected, AmiError, AmiFieldError, AmiResponse, AmiTimeout
from hotline_bridge.core.commands import (
    BlindTransfer,
    CallOut,
    Command,
    CommandResult,
    ConfbridgeKick,
    Hangup,
    Originate,
    Redirect,
    SetGlobal,
    SetVar,
)
from hotline_bridge.core.feedback import ResultHandler, Submit

log = structlog.get_logger(__name__)

Fields = dict[str, str | list[str]]


class AmiBatchSender(Protocol):
    """What ``AmiClient.send_batch`` offers: write now, await each reply later."""

    def send_batch(
        self,
        batch: Sequence[tuple[str, Mapping[str, str | Sequence[str]] | None]],
        *,
        timeout: float | None = None,
    ) -> list[Coroutine[Any, Any, AmiResponse]]: ...


def to_action(cmd: Command) -> tuple[str, Fields]:
    """The AMI action name and fields for one command (pure)."""
    match cmd:
        case SetVar(channel=channel, name=name, value=value):
            return "Setvar", {"Channel": channel, "Variable": name, "Value": value}
        case SetGlobal(name=name, value=value):
            # No Channel: Asterisk sets the global (read by every new call's dialplan).
            return "Setvar", {"Variable": name, "Value": value}
        case BlindTransfer(channel=channel, context=context, exten=exten):
            return "BlindTransfer", {"Channel": channel, "Context": context, "Exten": exten}
        case Redirect():
            fields: Fields = {
                "Channel": cmd.channel,
                "Context": cmd.context,
                "Exten": cmd.exten,
                "Priority": "1",
            }
            if cmd.extra_channel:
                fields |= {
                    "ExtraChannel": cmd.extra_channel,
                    "ExtraContext": cmd.context,
                    "ExtraExten": cmd.extra_exten or cmd.exten,
                    "ExtraPriority": "1",
                }
            return "Redirect", fields
        case Originate():
            fields = {
                "Channel": cmd.dial,
                "Application": cmd.application,
                "Data": cmd.data,
                "Timeout": str(cmd.timeout_s * 1000),
                "ChannelId": cmd.channel_id,
                # The answer comes later as an OriginateResponse event, matched by Uniqueid.
                "Async": "true",
                "Variable": [f"{k}={v}" for k, v in cmd.variables.items()],
            }
            if cmd.caller_id:  # empty: withheld (the machine found no presentable number)
                fields["CallerID"] = f'"{cmd.caller_id}" <{cmd.caller_id}>'
            return "Originate", fields
        case CallOut():
            return "Originate", {
                "Channel": cmd.dial,
                "Context": cmd.context,
                "Exten": cmd.exten,
                "Priority": "1",
                "CallerID": f'"{cmd.caller_id}" <{cmd.caller_id}>',
                "Timeout": str(cmd.timeout_s * 1000),
                "ChannelId": cmd.channel_id,
                "Async": "true",
                "Variable": [f"{k}={v}" for k, v in cmd.variables.items()],
            }
        case ConfbridgeKick(conference=conference, channel=channel):
            return "ConfbridgeKick", {"Conference": conference, "Channel": channel}
        case Hangup(channel=channel):
            return "Hangup", {"Channel": channel, "Cause": "16"}
    raise TypeError(f"unknown command {cmd!r}")


async def outcome_of(cmd: Command, reply: Awaitable[AmiResponse]) -> CommandResult:
    """What the PBX's reply (or its absence) says about one command."""
    try:
        response = await reply
    except AmiFieldError as exc:
        return CommandResult(cmd, False, f"refused before sending: {exc}")
    except (AmiTimeout, AmiDisconnected) as exc:
        # The action may well have run; only its reply was lost. Never re-sent: the machine
        # waits for the PBX's events (or its expiry) instead of calling it refused.
        return CommandResult(cmd, False, str(exc) or type(exc).__name__, unknown=True)
    except AmiError as exc:
        return CommandResult(cmd, False, str(exc) or type(exc).__name__)
    if not response.success:
        return CommandResult(cmd, False, response.message)
    return CommandResult(cmd, True)


class Interpreter:
    def __init__(
        self,
        ami: AmiBatchSender,
        on_latency: Callable[[str, float], None] | None = None,
    ) -> None:
        self._ami = ami
        self._on_latency = on_latency
        self._tasks: set[asyncio.Task[list[CommandResult]]] = set()

    def submitter(self, on_result: ResultHandler) -> Submit:
        """A submit function whose results all go to ``on_result`` (one per capability)."""

        def submit(commands: Sequence[Command]) -> None:
            self.submit(commands, on_result)

        return submit

    def submit(self, commands: Sequence[Command], on_result: ResultHandler) -> None:
        """Write a batch now, in one write; results arrive through ``on_result``, in order."""
        if not commands:
            return
        actions = [to_action(cmd) for cmd in commands]
        started = time.perf_counter()
        replies = self._ami.send_batch(actions)
        task = asyncio.get_running_loop().create_task(
            self._collect(commands, actions, replies, started, on_result)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _collect(
        self,
        commands: Sequence[Command],
        actions: Sequence[tuple[str, Fields]],
        replies: Sequence[Coroutine[Any, Any, AmiResponse]],
        started: float,
        on_result: ResultHandler,
    ) -> list[CommandResult]:
        results = []
        for cmd, (action, _), reply in zip(commands, actions, replies, strict=True):
            result = await outcome_of(cmd, reply)
            if self._on_latency is not None:
                self._on_latency(action, time.perf_counter() - started)
            log.debug("pbx command", ref=cmd.ref, command=type(cmd).__name__, ok=result.ok)
            on_result(result)
            results.append(result)
        return results

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
