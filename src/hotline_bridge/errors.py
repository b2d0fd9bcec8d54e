"""Domain refusals raised by services; the HTTP edge maps each to its 4xx status."""

from __future__ import annotations


class Refused(Exception):
    """An action the bridge will not take; ``str(exc)`` is a reason a person can act on."""

    status = 400


class Invalid(Refused):
    status = 422


class NotFound(Refused):
    status = 404


class Forbidden(Refused):
    status = 403


class Conflict(Refused):
    """The call is not in a state that allows the action (no call, transfer in progress...)."""

    status = 409


class Unavailable(Refused):
    """The PBX link is down; nothing was attempted."""

    status = 503
