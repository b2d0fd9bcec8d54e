"""Outgoing actions: panoramisk's ``Action`` with its 1.4 completion logic replaced.

What is reused from panoramisk: ActionID generation (a per-process UUID plus a counter) and the
wire serialisation (``Key: value`` lines, one per list element, blank-line terminated). What is
replaced, and why, is commented at each override. Fields are validated by
:mod:`hotline_bridge.ami.fields` before the object exists, so an invalid action never gets an
ActionID, never reaches the pending table and never reaches the socket.
"""

from __future__ import annotations

from typing import cast

from panoramisk.actions import Action

from hotline_bridge.ami.fields import Fields, validate_action_name, validate_fields
from hotline_bridge.ami.messages import AmiEvent, AmiResponse

ActionResult = AmiResponse | tuple[AmiResponse, list[AmiEvent]]


class EdgeAction(Action):  # type: ignore[misc]  # panoramisk ships no type hints
    """One action in flight: its wire form, its future and, for list actions, the items so far.

    ``future`` (created by panoramisk's ``Action.__init__`` on the running loop) resolves to the
    :class:`AmiResponse` for a plain action, or ``(response, items)`` for a list action.
    """

    def __init__(self, name: str, lines: list[tuple[str, str]], *, as_list: bool) -> None:
        grouped: dict[str, str | list[str]] = {"Action": name}
        for key, value in lines:
            previous = grouped.get(key)
            if previous is None:
                grouped[key] = value
            elif isinstance(previous, list):
                previous.append(value)
            else:
                grouped[key] = [previous, value]
        super().__init__(grouped, as_list=as_list)
        # Plain attributes: panoramisk's CaseInsensitiveDict.__getattr__ answers '' for unknown
        # names, so these must be set before use and must not shadow Mapping methods (items()).
        self.name = name
        self.response: AmiResponse | None = None
        self.list_items: list[AmiEvent] = []

    @property
    def action_id(self) -> str:
        return cast(str, self["ActionID"])

    def encode(self) -> bytes:
        return str(self).encode("utf-8")

    @property
    def multi(self) -> bool:
        # WORKAROUND panoramisk 1.4: Action.multi evaluates self['async'] for any response ending
        # "successfully queued" (PlayDTMF, Atxfer, async Originate) and raises KeyError: 'async'
        # inside the protocol handler when the caller sent no Async header; it also guesses
        # list-ness from message text ("will follow", "added ... to queue"). Here an action is a
        # list exactly when the caller used send_list(); nothing is inferred from the message.
        return bool(self.as_list)

    @property
    def completed(self) -> bool:
        return self.future.done()  # type: ignore[no-any-return]

    def add_message(self, message: AmiResponse | AmiEvent) -> bool:
        """Feed the response or a list item; return True once the action is complete.

        Replaces panoramisk's add_message, which for a list action answered with
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
