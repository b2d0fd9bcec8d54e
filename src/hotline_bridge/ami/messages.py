"""Incoming AMI messages: the light :class:`AmiEvent` / :class:`AmiResponse` types and the parser.

Event ingestion is the hot path (the bridge must take >= 20,000 events/s on one core), so an
event is a slotted object over the plain ``dict`` the parser builds: no per-field objects, and the
case-insensitive index is only built if a caller asks for a key in non-canonical case.
"""

from __future__ import annotations

from collections.abc import Iterator

_SUCCESS = frozenset({"success", "follows", "goodbye"})


def parse_lines(lines: list[str]) -> tuple[dict[str, str], dict[str, list[str]] | None]:
    """Parse ``Key: value`` lines into first-value fields plus the repeated keys, if any.

    Asterisk writes ``Key: value``; the single space after the colon is dropped, any other
    whitespace is part of the value. Lines without a colon carry nothing and are skipped.
    """
    fields: dict[str, str] = {}
    multi: dict[str, list[str]] | None = None
    for line in lines:
        # Nearly every line is "Key: value": one split at ": " gives it, without copying the
        # value again to drop its space (a quarter of the parse). Anything else, split at the
        # first colon.
        key, sep, value = line.partition(": ")
        if not sep or ":" in key:
            key, sep, value = line.partition(":")
            if not sep:
                continue
            if value[:1] == " ":
                value = value[1:]
        if key in fields:
            # Repeated headers (ChanVariable, Output...) are rare: keep the common path flat.
            if multi is None:
                multi = {}
            values = multi.get(key)
            if values is None:
                multi[key] = [fields[key], value]
            else:
                values.append(value)
        else:
            fields[key] = value
    return fields, multi


class AmiMessage:
    """Header fields of one AMI message with case-insensitive lookup."""

    __slots__ = ("_fields", "_folded", "_multi")

    def __init__(self, fields: dict[str, str], multi: dict[str, list[str]] | None = None) -> None:
        self._fields = fields
        self._multi = multi
        self._folded: dict[str, str] | None = None

    def _canonical(self, key: str) -> str | None:
        if key in self._fields:
            return key
        folded = self._folded
        if folded is None:
            folded = self._folded = {k.lower(): k for k in self._fields}
        return folded.get(key.lower())

    def get(self, key: str, default: str = "") -> str:
        """First value of header ``key`` (any case), or ``default``."""
        value = self._fields.get(key)
        if value is not None:
            return value
        canonical = self._canonical(key)
        return default if canonical is None else self._fields[canonical]

    def get_all(self, key: str) -> list[str]:
        """Every value of a header that may repeat (``ChanVariable``, ``Output``...)."""
        canonical = self._canonical(key)
        if canonical is None:
            return []
        if self._multi is not None and canonical in self._multi:
            return list(self._multi[canonical])
        return [self._fields[canonical]]

    def __getitem__(self, key: str) -> str:
        canonical = self._canonical(key)
        if canonical is None:
            raise KeyError(key)
        return self._fields[canonical]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._canonical(key) is not None

    def keys(self) -> Iterator[str]:
        return iter(self._fields)

    def as_dict(self) -> dict[str, str | list[str]]:
        """A copy of all fields as received (repeated headers as lists)."""
        out: dict[str, str | list[str]] = dict(self._fields)
        if self._multi:
            out.update({k: list(v) for k, v in self._multi.items()})
        return out

    @property
    def fields(self) -> dict[str, str | list[str]]:
        return self.as_dict()

    @property
    def action_id(self) -> str | None:
        return self._fields.get("ActionID") or self.get("ActionID") or None


class AmiEvent(AmiMessage):
    """One ``Event:`` message. ``name`` is the event name as Asterisk spelled it."""

    __slots__ = ("name",)

    def __init__(
        self, name: str, fields: dict[str, str], multi: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(fields, multi)
        self.name = name

    def __repr__(self) -> str:
        # Field values may hold citizens' numbers: repr shows identifiers only.
        return f"<AmiEvent {self.name} uniqueid={self.get('Uniqueid')!r}>"


class AmiResponse(AmiMessage):
    """The ``Response:`` to one action."""

    __slots__ = ("status",)

    def __init__(self, fields: dict[str, str], multi: dict[str, list[str]] | None = None) -> None:
        super().__init__(fields, multi)
        self.status = fields.get("Response") or self.get("Response")

    @property
    def success(self) -> bool:
        return self.status.lower() in _SUCCESS

    @property
    def message(self) -> str:
        return self.get("Message")

    def __repr__(self) -> str:
        return f"<AmiResponse {self.status} action_id={self.action_id!r} message={self.message!r}>"
