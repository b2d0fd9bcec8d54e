"""Outgoing actions: one object per action in flight, its wire bytes built once.

panoramisk's ``Action`` used to be the base class; it is no longer used, because on the hot path
(a hotkey writes Setvar x 9 + BlindTransfer) its costs were all ours: a case-insensitive dict
per action, a sorted re-serialisation on every ``str()``, and completion logic that breaks on
some replies (below). The wire form is the same (``Key: value`` lines, one per list element,
blank-line terminated; ActionIDs ``action/<uuid>/1/<n>`` as panoramisk generates them), built
once from the validated lines. Fields are validated by :mod:`hotline_bridge.ami.fields` before
the object exists, so an invalid action never gets an ActionID, never reaches the pending table
and never reaches the socket.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid

from hotline_bridge.ami.fields import Fields, validate_action_name, validate_fields
from hotline_bridge.ami.messages import AmiEvent, AmiResponse

ActionResult = AmiResponse | tuple[AmiResponse, list[AmiEvent]]

# One prefix per process (a reconnect does not reuse an ActionID a late reply could match).
_ID_PREFIX = f"action/{uuid.uuid4()}/1/"
_ids = itertools.count(1)


class EdgeAction:
    """One action in flight: its wire form, its future and, for list actions, the items so far.

    ``future`` resolves to the :class:`AmiResponse` for a plain action, or ``(response, items)``
    for a list action.
    """

    __slots__ = ("_wire", "action_id", "as_list", "future", "list_items", "name", "response")

    def __init__(self, name: str, lines: list[tuple[str, str]], *, as_list: bool) -> None:
        self.name = name
        self.action_id = f"{_ID_PREFIX}{next(_ids)}"
        self.as_list = as_list
        self.future: asyncio.Future[ActionResult] = asyncio.get_running_loop().create_future()
        self.response: AmiResponse | None = None
        self.list_items: list[AmiEvent] = []
        head = f"Action: {name}\r\nActionID: {self.action_id}\r\n"
        self._wire = (head + "".join(f"{k}: {v}\r\n" for k, v in lines) + "\r\n").encode()

    def encode(self) -> bytes:
        """The bytes to write (built once, when the action was)."""
        return self._wire

    @property
    def multi(self) -> bool:
        # (panoramisk 1.4's Action.multi evaluates self['async'] for any response ending
        # "successfully queued" (PlayDTMF, Atxfer, async Originate) and raises KeyError: 'async'
        # inside the protocol handler when the caller sent no Async header; it also guesses
        # list-ness from message text ("will follow", "added ... to queue").) Here an action is a
        # list exactly when the caller used send_list(); nothing is inferred from the message.
        return bool(self.as_list)

    @property
    def completed(self) -> bool:
        return self.future.done()

    def add_message(self, message: AmiResponse | AmiEvent) -> bool:
        """Feed the response or a list item; return True once the action is complete.

        Unlike panoramisk's add_message, which for a list action answered with
        ``Response: Error`` waits for list events that never come (the future hangs).
        """
        if self.future.done():
            return True
        if isinstance(message, AmiResponse):
            if self.response is not None:
                return False  # a second Response for one ActionID: ignore it
            self.response = message
            if not self.multi:
                self.future.set_result(message)
                return True
            if not message.success or not _announces_list(message):
                self.future.set_result((message, []))
                return True
            return False
        if not self.multi or self.response is None:
            return False
        if message.get("EventList").lower() == "complete" or message.name.endswith("Complete"):
            self.future.set_result((self.response, self.list_items))
            return True
        self.list_items.append(message)
        return False


def _announces_list(response: AmiResponse) -> bool:
    return response.get("EventList").lower() == "start" or "will follow" in response.message.lower()


def build_action(
    name: str, fields: Fields | None = None, *, as_list: bool = False, internal: bool = False
) -> EdgeAction:
    """Validate, then build. Raises AmiFieldError before any state is created."""
    validate_action_name(name, internal=internal)
    lines = validate_fields(fields)
    return EdgeAction(name, lines, as_list=as_list)
