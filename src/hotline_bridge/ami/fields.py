"""Validation of AMI action names and fields before anything reaches the socket (pure, no I/O).

AMI has no escaping: CR and bare LF both end a header line, and a blank line ends the action, so a
value carrying ``\\r\\n\\r\\nAction: Hangup`` runs a second action (verified against Asterisk 22).
Every key and value is therefore checked here and refused with :class:`AmiFieldError`; nothing is
ever silently stripped, because a silently altered transfer target is as bad as an injected one.

Rules (limits measured on Asterisk 22.10.1):

* keys: ASCII letter, then letters, digits, ``-`` or ``_`` (at most 64); ``Action`` and
  ``ActionID`` are reserved for the edge, and two keys differing only in case are refused;
* values: ``str``, ``int`` (converted with ``str()``; ``bool`` is refused because AMI expects
  ``true``/``false`` spelled out) or a list/tuple of those for repeated headers such as
  ``Variable``; ``None`` and anything else are refused;
* values must not contain C0 controls (``\\x00``-``\\x1f``: CR, LF, NUL, TAB...), DEL, C1 controls
  (``\\x80``-``\\x9f``, including NEL U+0085), U+2028/U+2029 or lone surrogates;
* no leading space: Asterisk drops leading blanks of a value (verified: ``"   x y  "`` arrives as
  ``"x y  "``). Trailing spaces are transmitted verbatim (verified) and are allowed;
* each ``Key: value`` line at most :data:`MAX_LINE_BYTES` UTF-8 bytes (Asterisk rejects lines over
  1022 bytes with "line too long") and at most :data:`MAX_LINES` lines per action (Asterisk
  rejects more than 128 with "Too many lines in message").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from hotline_bridge.ami.errors import AmiFieldError

FieldScalar = str | int
FieldValue = FieldScalar | Sequence[FieldScalar]
Fields = Mapping[str, FieldValue]

#: Longest ``Key: value`` line accepted, in UTF-8 bytes; Asterisk 22's own limit is 1022.
MAX_LINE_BYTES = 1000
#: Most header lines per action, counting ``Action`` and ``ActionID``; Asterisk's limit.
MAX_LINES = 128

_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_ACTION_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# One C-level scan per value: C0, DEL, C1 (incl. U+0085), line/paragraph separators, surrogates.
_BAD_CHAR_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_RESERVED_KEYS = frozenset({"action", "actionid"})
# Session actions belong to the edge: sending them through it would corrupt its state.
_RESERVED_ACTIONS = frozenset({"login", "logoff", "challenge", "events", "filter"})


def validate_action_name(name: object, *, internal: bool = False) -> str:
    """Return ``name`` if it is a plain AMI action name, else raise :class:`AmiFieldError`."""
    if not isinstance(name, str) or _ACTION_RE.fullmatch(name) is None:
        raise AmiFieldError("Action", "action name must be letters, digits or '_'")
    if not internal and name.lower() in _RESERVED_ACTIONS:
        raise AmiFieldError("Action", f"{name} is managed by the AMI edge itself")
    return name


def _check_value(field: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AmiFieldError(field, f"value must be str or int, not {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    bad = _BAD_CHAR_RE.search(text)
    if bad is not None:
        char = bad.group()
        raise AmiFieldError(
            field, f"forbidden character U+{ord(char):04X} at position {bad.start()}"
        )
    if text[:1] == " ":
        raise AmiFieldError(field, "leading space (Asterisk would silently drop it)")
    return text


def validate_fields(fields: Fields | None) -> list[tuple[str, str]]:
    """Check every key and value; return the ``(key, value)`` lines to send, in order.

    A list value yields one line per element. Raises :class:`AmiFieldError` naming the first bad
    field (``Variable[2]`` for an element of a list); the value itself is never quoted.
    """
    if fields is None:
        return []
    if not isinstance(fields, Mapping):
        raise AmiFieldError("*", "fields must be a mapping")
    lines: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in fields.items():
        if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
            shown = key[:64].encode("unicode_escape").decode() if isinstance(key, str) else "<key>"
            raise AmiFieldError(
                shown, "key must be an ASCII letter then letters, digits, '-' or '_'"
            )
        folded = key.lower()
        if folded in _RESERVED_KEYS:
            raise AmiFieldError(key, "set by the AMI edge, not by callers")
        if folded in seen:
            raise AmiFieldError(key, "given twice (keys are case-insensitive)")
        seen.add(folded)
        if isinstance(value, str | int):
            lines.append((key, _check_value(key, value)))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                lines.append((key, _check_value(f"{key}[{i}]", item)))
        else:
            raise AmiFieldError(
                key, f"value must be str, int or a list, not {type(value).__name__}"
            )
    for key, text in lines:
        # len(key) + ": " + bytes; only encode when the str could be too long.
        if len(key) + 2 + len(text) > MAX_LINE_BYTES // 4 and (
            len(key) + 2 + len(text.encode("utf-8")) > MAX_LINE_BYTES
        ):
            raise AmiFieldError(key, f"line longer than {MAX_LINE_BYTES} bytes")
    if len(lines) + 2 > MAX_LINES:
        raise AmiFieldError("*", f"more than {MAX_LINES} lines in one action")
    return lines
