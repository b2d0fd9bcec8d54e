"""The FastAGI wire format: environment parsing, routes, and what may be sent as a value."""

from __future__ import annotations

import pytest

from hotline_bridge.agi.protocol import (
    MAX_COMMAND_BYTES,
    MAX_ENV_BYTES,
    AgiProtocolError,
    AgiValueError,
    args_of,
    endpoint_of,
    number_of,
    parse_env,
    quote,
    route_of,
    set_variable,
)

ENV = (
    b"agi_network: yes\n"
    b"agi_network_script: entry\n"
    b"agi_request: agi://127.0.0.1:4573/entry\n"
    b"agi_channel: PJSIP/carrier-0000001a\n"
    b"agi_uniqueid: 1764432000.42\n"
    b"agi_callerid: 13800138000\n"
    b"agi_calleridname: \xe5\xbc\xa0\xe4\xb8\x89\n"
    b"agi_rdnis: unknown\n"
    b"agi_extension: 12345\n"
    b"agi_arg_1: h-01m8m3h46eseknac2jvyq5j6te\n"
    b"agi_arg_2: \n"
    b"\n"
)


def test_parse_env_reads_asterisks_block() -> None:
    env = parse_env(ENV)
    assert env["agi_network_script"] == "entry"
    assert env["agi_calleridname"] == "张三"
    assert env["agi_arg_2"] == ""
    assert route_of(env) == "entry"
    assert args_of(env) == ["h-01m8m3h46eseknac2jvyq5j6te", ""]


def test_parse_env_tolerates_crlf_and_undecodable_names() -> None:
    env = parse_env(b"agi_request: agi://h/receive\r\nagi_calleridname: \xff\xfe\r\n\r\n")
    assert route_of(env) == "receive"
    assert env["agi_calleridname"] == "\ufffd\ufffd"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\n\n", "empty"),
        (b"GET / HTTP/1.1\nHost: x\n\n", "not an 'agi_name: value'"),
        (b"agi_channel: PJSIP/x-00000001\n\n", "no agi_request"),
        (b"agi_request: agi://h/entry\nAction: Hangup\n\n", "line 2"),
        (b"agi_request: x\n" + b"agi_x: y\n" * 200 + b"\n", "more than"),
        (b"agi_request: " + b"x" * MAX_ENV_BYTES + b"\n\n", "larger than"),
    ],
)
def test_parse_env_refuses_what_is_not_an_agi_request(raw: bytes, problem: str) -> None:
    with pytest.raises(AgiProtocolError, match=problem):
        parse_env(raw)


@pytest.mark.parametrize(
    ("env", "route"),
    [
        ({"agi_request": "agi://127.0.0.1:4573/entry", "agi_network_script": "entry"}, "entry"),
        ({"agi_request": "agi://127.0.0.1/receive?x=1"}, "receive"),
        ({"agi_request": "agi://127.0.0.1:4573/"}, None),
        ({"agi_request": "/usr/bin/script.sh"}, None),
        ({"agi_request": "agi://h/x", "agi_network_script": "../../etc/passwd"}, None),
        ({"agi_request": "agi://h/x", "agi_network_script": "Entry"}, None),
    ],
)
def test_route_of(env: dict[str, str], route: str | None) -> None:
    assert route_of(env) == route


@pytest.mark.parametrize(
    ("channel", "endpoint"),
    [
        ("PJSIP/carrier-0000001a", "carrier"),
        ("PJSIP/partner-110-000000d2", "partner-110"),
        ("PJSIP/carrier", None),
        ("Local/12345@hotline-citizens-00000001;2", None),
        ("", None),
    ],
)
def test_endpoint_of(channel: str, endpoint: str | None) -> None:
    assert endpoint_of(channel) == endpoint


@pytest.mark.parametrize(
    ("callerid", "number"),
    [
        ("13800138000", "13800138000"),
        ("+8613800138000", "+8613800138000"),
        (" 08885123456 ", "08885123456"),
        ("anonymous", None),
        ("unknown", None),
        ("", None),
        ("12", None),
        ("1380013800\n0", None),
    ],
)
def test_number_of(callerid: str, number: str | None) -> None:
    assert number_of(callerid) == number


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("gucheng", '"gucheng"'),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("古城区", '"古城区"'),
        ("${EVIL}", '"${EVIL}"'),  # SET VARIABLE stores text; nothing is evaluated
    ],
)
def test_quote_escapes_for_res_agis_parser(value: str, quoted: str) -> None:
    assert quote(value) == quoted


@pytest.mark.parametrize(
    "value",
    [
        "x\nHANGUP",
        "x\r\nEXEC Dial PJSIP/evil",
        "x\r",
        "nul\x00",
        "tab\there",
        "del\x7f",
        "nel\x85",
        "sep\u2028",
        " leading blank",
    ],
)
def test_control_characters_are_refused_like_in_ami(value: str) -> None:
    with pytest.raises(AgiValueError, match="CALL_NUISANCE") as exc:
        set_variable("CALL_NUISANCE", value)
    assert value not in str(exc.value)  # the message never quotes the value


def test_set_variable_command() -> None:
    assert set_variable("HANDOFF_URGENCY", "urgent") == 'SET VARIABLE HANDOFF_URGENCY "urgent"'
    assert set_variable("__INHERITED", "") == 'SET VARIABLE __INHERITED ""'


@pytest.mark.parametrize(
    "name", ["", "1ABC", "A B", "A\nB", "A-B", "A${X}", "A" * 65, "___A", "A\u00e9"]
)
def test_variable_names_must_be_plain(name: str) -> None:
    with pytest.raises(AgiValueError, match="name"):
        set_variable(name, "x")


def test_long_values_cannot_overflow_res_agis_buffer() -> None:
    # res_agi reads a command into 2 KiB and runs the rest of a longer line as another command;
    # values are held to the AMI line limit, commands to MAX_COMMAND_BYTES (in UTF-8 bytes).
    set_variable("V", "x" * 900)
    with pytest.raises(AgiValueError, match="longer"):
        set_variable("V", "x" * MAX_COMMAND_BYTES)
    with pytest.raises(AgiValueError, match="longer"):
        set_variable("V", "区" * 340)


def test_non_strings_are_refused() -> None:
    with pytest.raises(AgiValueError, match="str"):
        set_variable("V", 1)  # type: ignore[arg-type]
