"""Partner outcomes and timelines shared by carry-number transfers and three-way calls.

Asterisk reports the result of dialling the partner in two vocabularies: ``DIALSTATUS`` (from
``Dial`` in the handoff dialplan) and the ``Reason`` code of ``OriginateResponse`` (the last control
frame seen). Both are mapped here to one :class:`Outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    ABANDONED = "abandoned"  # the citizen hung up before the partner answered
    CANCELLED = "cancelled"  # the agent withdrew the partner leg
    UNKNOWN = "unknown"  # the result was never observed (e.g. AMI connection lost)


_DIALSTATUS = {
    "ANSWER": Outcome.ANSWERED,
    "BUSY": Outcome.BUSY,
    "NOANSWER": Outcome.NO_ANSWER,
    "CONGESTION": Outcome.REJECTED,
    "DONTCALL": Outcome.REJECTED,
    "TORTURE": Outcome.REJECTED,
    "CHANUNAVAIL": Outcome.FAILED,
    "INVALIDARGS": Outcome.FAILED,
    "CANCEL": Outcome.ABANDONED,
}

# OriginateResponse Reason: the AST_CONTROL_* frame that ended the attempt.
_ORIGINATE_REASON = {
    "4": Outcome.ANSWERED,  # AST_CONTROL_ANSWER
    "5": Outcome.BUSY,  # AST_CONTROL_BUSY
    "8": Outcome.REJECTED,  # AST_CONTROL_CONGESTION
    "3": Outcome.NO_ANSWER,  # AST_CONTROL_RINGING: still ringing when the timeout hit
    "1": Outcome.REJECTED,  # AST_CONTROL_HANGUP: the far end hung up before answering
    "0": Outcome.FAILED,  # could not place the call at all
}


def outcome_of_dialstatus(dialstatus: str) -> Outcome:
    return _DIALSTATUS.get(dialstatus.strip().upper(), Outcome.FAILED)


def outcome_of_originate_reason(reason: str) -> Outcome:
    return _ORIGINATE_REASON.get(reason.strip(), Outcome.FAILED)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: float
    what: str
    detail: str = ""
