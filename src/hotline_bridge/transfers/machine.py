"""The carry-number transfer state machine: pure transitions, commands returned as data.

A carry transfer moves the citizen's own channel into the ``hotline-handoff`` dialplan (AMI
``BlindTransfer`` on the agent's channel), so the partner is dialled with the citizen's caller ID.
If the partner does not take the call, the dialplan itself brings the citizen back to the same
agent or the queue; this machine only observes and records. It never performs I/O.

Rules every transition keeps:
- applying the same event twice changes nothing the second time;
- a late event for an earlier stage (e.g. the PBX's reply to the transfer arriving after the
  partner already answered) is recorded at most, never moves the state backwards;
- a hang-up in the middle is a normal transition (``abandoned``), not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.core.commands import BlindTransfer, Command, CommandResult, SetVar
from hotline_bridge.core.outcomes import Outcome, TimelineEntry, outcome_of_dialstatus

# Beyond ring + return timeouts, how long a transfer may wait for the PBX's last word.
EXPIRY_MARGIN_S = 30.0
HANDOFF_CONTEXT = "hotline-handoff"
HANDOFF_EXTEN = "carry"


class TransferState(StrEnum):
    REQUESTED = "requested"  # record written, commands on their way to the PBX
    DIALING = "dialing"  # the PBX took the transfer; the citizen's leg dials the partner
    RINGING = "ringing"
    ANSWERED = "answered"  # citizen and partner are talking
    RETURNING = "returning"  # the partner did not take it; the dialplan brings the citizen back
    RETURNED = "returned"  # the citizen talks to an agent again
    FAILED = "failed"  # the PBX refused the transfer; the citizen never left the agent
    ABANDONED = "abandoned"  # the citizen hung up before the transfer settled
    LOST = "lost"  # the outcome was never observed (the AMI link dropped meanwhile)


TERMINAL = frozenset(
    {
        TransferState.ANSWERED,
        TransferState.RETURNED,
        TransferState.FAILED,
        TransferState.ABANDONED,
        TransferState.LOST,
    }
)
_IN_FLIGHT = frozenset({TransferState.REQUESTED, TransferState.DIALING, TransferState.RINGING})


@dataclass(frozen=True, slots=True)
class CarryPlan:
    """Everything needed to start a transfer, decided before any AMI action."""

    transfer_id: str
    handoff_id: str
    handoff_url: str
    call: LiveCall  # the citizen-agent call being handed over
    target: str
    target_number: str
    target_dial: str
    forwarding_number: str
    ring_timeout_s: int
    return_dial: str
    return_queue: str
    return_timeout_s: int


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    handoff_id: str
    call_id: str
    citizen_channel: str
    citizen_number: str
    agent_id: str
    agent_channel: str
    target: str
    state: TransferState
    outcome: Outcome | None
    timeline: tuple[TimelineEntry, ...]
    returned_to: str = ""
    # Past this moment a transfer the PBX never settled is given up (a Tick says when).
    due_at: float = float("inf")

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def _note(self, now: float, what: str, detail: str = "") -> tuple[TimelineEntry, ...]:
        return (*self.timeline, TimelineEntry(now, what, detail))


# -- events the shell feeds in -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartnerDialing:
    """The citizen's leg reached the handoff dialplan and is dialling the partner."""


@dataclass(frozen=True, slots=True)
class PartnerRinging:
    pass


@dataclass(frozen=True, slots=True)
class PartnerResult:
    """``Dial`` to the partner returned with this ``DIALSTATUS``."""

    dialstatus: str


@dataclass(frozen=True, slots=True)
class CitizenReturned:
    """The citizen is bridged with an agent again after a failed handoff."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class CitizenHungUp:
    pass


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: a transfer past its ``due_at`` is given up (the clock is an input)."""


@dataclass(frozen=True, slots=True)
class Expired:
    """No outcome within the longest time the dialplan can take (ring + return + margin)."""


@dataclass(frozen=True, slots=True)
class Reconciled:
    """Where the PBX shows the citizen after the bridge could not see it (a reconnect, or a
    restart that restored this transfer from the store): its events meanwhile are lost.

    ``citizen`` is ``gone`` (no channel), ``dialplan`` (alive, in no bridge: still dialling or
    on its way back), ``with_agent`` (bridged with agent ``agent_id``; ``original_leg`` when it is
    the very leg the transfer started from) or ``with_partner`` (bridged with someone else).
    """

    citizen: str
    agent_id: str = ""
    original_leg: bool = False


Event = (
    CommandResult
    | Reconciled
    | PartnerDialing
    | PartnerRinging
    | PartnerResult
    | CitizenReturned
    | CitizenHungUp
    | Expired
    | Tick
)


# -- transitions -------------------------------------------------------------------------------


def start(plan: CarryPlan, now: float) -> tuple[Transfer, list[Command]]:
    """A new transfer and the commands that launch it.

    The variables are set on the citizen's channel, which is the one that runs the handoff
    dialplan; then the agent's channel is blind-transferred, which hangs up the agent leg.
    """
    ref, call = plan.transfer_id, plan.call
    chan = call.citizen_channel
    variables = {
        "HANDOFF_ID": plan.handoff_id,
        "HANDOFF_URL": plan.handoff_url,
        "HANDOFF_TARGET": plan.target_number,
        "HANDOFF_DIAL": plan.target_dial,
        "HANDOFF_FORWARDER": plan.forwarding_number,
        "HANDOFF_RING_TIMEOUT": str(plan.ring_timeout_s),
        "HANDOFF_RETURN_DIAL": plan.return_dial,
        "HANDOFF_RETURN_QUEUE": plan.return_queue,
        "HANDOFF_RETURN_TIMEOUT": str(plan.return_timeout_s),
    }
    commands: list[Command] = [SetVar(ref, chan, k, v) for k, v in variables.items()]
    commands.append(BlindTransfer(ref, call.agent_channel, HANDOFF_CONTEXT, HANDOFF_EXTEN))
    transfer = Transfer(
        id=plan.transfer_id,
        handoff_id=plan.handoff_id,
        call_id=call.call_id,
        citizen_channel=call.citizen_channel,
        citizen_number=call.citizen_number,
        agent_id=call.agent_id,
        agent_channel=call.agent_channel,
        target=plan.target,
        state=TransferState.REQUESTED,
        outcome=None,
        due_at=now + plan.ring_timeout_s + plan.return_timeout_s + EXPIRY_MARGIN_S,
        timeline=(TimelineEntry(now, "requested", f"target {plan.target}"),),
    )
    return transfer, commands


def step(t: Transfer, event: Event, now: float) -> tuple[Transfer, list[Command]]:
    """Apply one event. Never returns commands today: the dialplan owns the fallback."""
    if t.done:
        return t, []
    match event:
        case CommandResult(command=BlindTransfer(), ok=True):
            if t.state is TransferState.REQUESTED:
                return _to(t, TransferState.DIALING, now, "pbx_accepted"), []
        case CommandResult(command=BlindTransfer(), ok=False, unknown=True, reason=reason):
            # The reply was lost, not refused: the dialplan's events (or the expiry) will tell.
            return replace(t, timeline=t._note(now, "pbx_reply_lost", reason)), []
        case CommandResult(command=BlindTransfer(), ok=False, reason=reason):
            if t.state is TransferState.REQUESTED:
                return _to(t, TransferState.FAILED, now, "pbx_refused", reason, Outcome.FAILED), []
        case CommandResult(ok=False, reason=reason):
            # A refused SetVar means the channel is gone; the transfer's own reply will say so.
            return replace(t, timeline=t._note(now, "command_refused", reason)), []
        case PartnerDialing():
            if t.state is TransferState.REQUESTED:
                return _to(t, TransferState.DIALING, now, "partner_dialing"), []
        case PartnerRinging():
            if t.state in (TransferState.REQUESTED, TransferState.DIALING):
                return _to(t, TransferState.RINGING, now, "partner_ringing"), []
        case PartnerResult(dialstatus=status):
            if t.state in _IN_FLIGHT:
                outcome = outcome_of_dialstatus(status)
                if outcome is Outcome.ANSWERED:
                    return _to(t, TransferState.ANSWERED, now, "partner_answered", "", outcome), []
                if outcome is Outcome.ABANDONED:
                    return _to(
                        t, TransferState.ABANDONED, now, "citizen_hung_up", status, outcome
                    ), []
                return _to(t, TransferState.RETURNING, now, "partner_failed", status, outcome), []
        case CitizenReturned(agent_id=agent):
            if t.state is TransferState.RETURNING:
                t2 = _to(t, TransferState.RETURNED, now, "citizen_returned", agent)
                return replace(t2, returned_to=agent), []
        case CitizenHungUp():
            outcome = Outcome.ABANDONED if t.outcome is None else t.outcome
            return _to(t, TransferState.ABANDONED, now, "citizen_hung_up", "", outcome), []
        case Reconciled():
            return _reconciled(t, event, now), []
        case Expired() | Tick() if isinstance(event, Expired) or now >= t.due_at:
            outcome = Outcome.UNKNOWN if t.outcome is None else t.outcome
            return _to(t, TransferState.LOST, now, "expired", "", outcome), []
    return t, []


def _reconciled(t: Transfer, seen: Reconciled, now: float) -> Transfer:
    """The true state re-derived from the PBX's own view (the events in between are lost)."""
    match seen.citizen:
        case "gone":
            outcome = Outcome.UNKNOWN if t.outcome is None else t.outcome
            return _to(t, TransferState.LOST, now, "citizen_gone_unseen", "", outcome)
        case "with_agent" if seen.original_leg:
            if t.state is TransferState.REQUESTED:
                # The PBX never took the transfer: the citizen is still with the same agent.
                return _to(t, TransferState.FAILED, now, "pbx_never_took_it", "", Outcome.FAILED)
        case "with_agent" if t.state is not TransferState.REQUESTED:
            t2 = _to(t, TransferState.RETURNED, now, "citizen_returned_unseen", seen.agent_id)
            return replace(t2, returned_to=seen.agent_id)
        case "with_partner" if t.state in _IN_FLIGHT:
            # (RETURNING with someone else is on its way back: its events will tell.)
            return _to(
                t, TransferState.ANSWERED, now, "partner_answered_unseen", "", Outcome.ANSWERED
            )
    return t


def _to(
    t: Transfer,
    state: TransferState,
    now: float,
    what: str,
    detail: str = "",
    outcome: Outcome | None = None,
) -> Transfer:
    return replace(
        t,
        state=state,
        outcome=outcome if outcome is not None else t.outcome,
        timeline=t._note(now, what, detail),
    )
