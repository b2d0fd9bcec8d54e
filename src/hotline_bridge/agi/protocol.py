"""The FastAGI wire format, pure: Asterisk's environment block, commands, and safe values.

AGI is line-based like AMI: Asterisk sends ``agi_*: value`` lines and a blank line, then reads one
command per line (``SET VARIABLE NAME "value"``) and answers each with one line (``200
result=1``). A CR or LF inside a value would end the command and start another, so every value
passes the same control-character rules as an AMI field (:func:`hotline_bridge.ami.fields.
validate_fields`: no C0/C1 controls, DEL, U+2028/U+2029, lone surrogates, no leading blank) and
is refused, never stripped. Then it is quoted the way res_agi's argument parser reads it: inside
double quotes, ``"`` and ``\\`` escaped with a backslash (a quoted argument may hold blanks and
be empty). Variable names are not quoted but must be plain identifiers. A command line is at most
:data:`MAX_COMMAND_BYTES`: res_agi reads commands into a 2 KiB buffer and would run the rest of
a longer line as a second command.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hotline_bridge.ami.errors import AmiFieldError
from hotline_bridge.ami.fields import validate_fields

#: Largest environment block accepted (Asterisk 22 sends ~700 bytes).
MAX_ENV_BYTES = 16 * 1024
MAX_ENV_LINES = 128
#: Longest command line sent, in UTF-8 bytes with its LF (res_agi's buffer is 2048).
MAX_COMMAND_BYTES = 1024

_ENV_KEY = re.compile(r"agi_[a-z0-9_]{1,40}")
_ROUTE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_VARIABLE = re.compile(r"_{0,2}[A-Za-z][A-Za-z0-9_]{0,63}")
_ENDPOINT_CHANNEL = re.compile(r"PJSIP/([A-Za-z0-9_.-]{1,64})-[0-9a-f]{8}")
_NUMBER = re.compile(r"\+?[0-9]{3,20}")


class AgiProtocolError(ValueError):
    """What Asterisk (or whoever connected) sent is not an AGI request."""


class AgiValueError(ValueError):
    """A variable name or value may not be sent (the message names the variable, not the value)."""


def parse_env(raw: bytes) -> dict[str, str]:
    """The ``agi_*`` environment from the block Asterisk sends (up to and with the blank line)."""
    if len(raw) > MAX_ENV_BYTES:
        raise AgiProtocolError(f"environment larger than {MAX_ENV_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Caller names may be in any charset; nothing here reads them, so keep the rest usable.
        text = raw.decode("utf-8", "replace")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise AgiProtocolError("empty environment")
    if len(lines) > MAX_ENV_LINES:
        raise AgiProtocolError(f"more than {MAX_ENV_LINES} environment lines")
    env: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        key, sep, value = line.partition(":")
        if not sep or _ENV_KEY.fullmatch(key) is None:
            raise AgiProtocolError(f"line {number} is not an 'agi_name: value' line")
        env[key] = value.removeprefix(" ")
    if "agi_request" not in env:
        raise AgiProtocolError("no agi_request line")
    return env


def route_of(env: Mapping[str, str]) -> str | None:
    """The hook asked for: ``entry`` from ``agi://127.0.0.1:4573/entry`` (None if unusable)."""
    script = env.get("agi_network_script")
    if script is None:
        # agi_network_script is what FastAGI sends; fall back to the URL itself.
        request = env.get("agi_request", "")
        if not request.startswith("agi://"):
            return None
        script = request[len("agi://") :].partition("/")[2]
    name = script.partition("?")[0].strip("/")
    return name if _ROUTE.fullmatch(name) else None


def key_of(env: Mapping[str, str]) -> str:
    """The shared key the dialplan passed: ``entry?key=K`` (the ``HOTLINE_AGI_KEY`` global);
    "" if none."""
    script = env.get("agi_network_script") or env.get("agi_request", "")
    query = script.partition("?")[2]
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "key":
            return value
    return ""


def without_query(request: str) -> str:
    """An AGI request URL fit for a log line (its query may hold the key)."""
    return request.partition("?")[0]


def args_of(env: Mapping[str, str]) -> list[str]:
    """The AGI() application's arguments: ``agi_arg_1``, ``agi_arg_2``, ... in order."""
    args: list[str] = []
    while (value := env.get(f"agi_arg_{len(args) + 1}")) is not None:
        args.append(value)
    return args


def endpoint_of(channel: str) -> str | None:
    """The PJSIP endpoint of a channel name: ``carrier`` from ``PJSIP/carrier-0000001a``."""
    m = _ENDPOINT_CHANNEL.fullmatch(channel)
    return m.group(1) if m else None


def number_of(callerid: str) -> str | None:
    """A caller ID that is a phone number, else None (``anonymous``, ``unknown``, "")."""
    value = callerid.strip()
    return value if _NUMBER.fullmatch(value) else None


def quote(value: str, *, name: str = "value") -> str:
    """``value`` as one quoted AGI argument; AgiValueError if it breaks the AMI/AGI line rules."""
    try:
        validate_fields({"Value": value})
    except AmiFieldError as exc:
        raise AgiValueError(f"AGI value for {name}: {exc.reason}") from None
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_variable(name: str, value: str) -> str:
    """The ``SET VARIABLE`` command line (without its LF) that sets channel variable ``name``."""
    if not isinstance(name, str) or _VARIABLE.fullmatch(name) is None:
        raise AgiValueError("AGI variable name must be letters, digits and '_'")
    if not isinstance(value, str):
        raise AgiValueError(f"AGI value for {name}: must be str, not {type(value).__name__}")
    command = f"SET VARIABLE {name} {quote(value, name=name)}"
    if len(command.encode("utf-8")) + 1 > MAX_COMMAND_BYTES:
        raise AgiValueError(f"AGI value for {name}: command longer than {MAX_COMMAND_BYTES} bytes")
    return command


# What MSet takes literally: no separator (',' '|'), quote, backslash, '=' or space.
_MSET_VALUE = re.compile(r"[A-Za-z0-9_.:@/+\-]*")


def set_variables_at_once(variables: Mapping[str, str], *, checked: bool = False) -> str | None:
    """One ``EXEC MSet`` command line that sets every variable (one round trip instead of one
    per variable), or None where that cannot be said safely: fewer than two variables, a value
    MSet would parse (a comma, a quote...), or a line too long. Names and values are checked as
    :func:`set_variable` checks them, unless the caller has just done so (``checked``)."""
    if len(variables) < 2:
        return None
    for name, value in variables.items():
        if not checked:
            set_variable(name, value)  # the same name and value rules (AgiValueError)
        if _MSET_VALUE.fullmatch(value) is None:
            return None
    pairs = ",".join(f"{k}={v}" for k, v in variables.items())
    if len(pairs) + len('EXEC MSet ""\n') > MAX_COMMAND_BYTES:  # ASCII only: chars are bytes
        return None
    try:
        return "EXEC MSet " + quote(pairs)
    except AgiValueError:  # past the AMI/AGI line rules (its length)
        return None
