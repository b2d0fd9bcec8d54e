"""Domain refusals raised by services; the HTTP edge maps each to its 4xx status."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class Refused(Exception):
    """An action the bridge will not take; ``str(exc)`` is a reason a person can act on.

    ``details`` (optional) is structured help, e.g. the list of bad fields of a request body.
    """

    status = 400

    def __init__(self, reason: str, details: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


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


class Unauthenticated(Refused):
    status = 401


class TooLarge(Refused):
    status = 413


class UnsupportedMedia(Refused):
    status = 415


class SlowBody(Refused):
    """The request body did not arrive in time (a stalled or deliberately slow client)."""

    status = 408


_BY_STATUS: dict[int, type[Refused]] = {
    cls.status: cls
    for cls in (
        Refused,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        UnsupportedMedia,
        Invalid,
        Unavailable,
    )
}


def refusal(status: int, reason: str, details: Any = None) -> Refused:
    """The refusal class for an HTTP-like status decided by pure policy code (e.g. views)."""
    return _BY_STATUS.get(status, Refused)(reason, details)


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``{"field", "problem"}`` items (never the offending value)."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "problem": err["msg"]}
        for err in exc.errors()
    ]
