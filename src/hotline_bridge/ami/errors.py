"""Exceptions raised by the AMI edge.

Every failure the edge reports is an :class:`AmiError`; the subclasses tell the caller what it
can conclude about the action's outcome, which matters for transfers that must never run twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hotline_bridge.ami.messages import AmiResponse


class AmiError(Exception):
    """Base class of every AMI edge error."""


class AmiFieldError(AmiError, ValueError):
    """A field (or the action name) was refused before anything was written to the socket.

    The message names the field and the reason, never the value: values may hold citizens'
    numbers or secrets.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"AMI field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class AmiDisconnected(AmiError, ConnectionError):
    """No usable AMI connection, or it dropped while the action was pending.

    The outcome of a pending action is unknown (Asterisk may have run it); the edge never re-sends
    it, so the caller decides, e.g. by checking channel state after the next resync.
    """


class AmiTimeout(AmiError, TimeoutError):
    """No answer within the timeout. As with :class:`AmiDisconnected` the outcome is unknown."""

    def __init__(self, message: str, *, action: str = "", action_id: str = "") -> None:
        super().__init__(message)
        self.action = action
        self.action_id = action_id


class AmiActionFailed(AmiError):
    """Asterisk answered the action with ``Response: Error`` (or another non-success status)."""

    def __init__(self, action: str, response: AmiResponse) -> None:
        super().__init__(f"{action} failed: {response.message or response.status}")
        self.action = action
        self.response = response
        self.message = response.message
