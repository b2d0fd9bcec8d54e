"""AMI field validation: nothing that could end a header line or an action may pass."""

from __future__ import annotations

import pytest

from hotline_bridge.ami import AmiFieldError, validate_action_name, validate_fields
from hotline_bridge.ami.fields import MAX_LINE_BYTES, MAX_LINES

INJECTION = "x\r\n\r\nAction: Hangup\r\nChannel: PJSIP/a"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("abc\rdef", "U+000D"),
        ("abc\ndef", "U+000A"),
        ("abc\r\ndef", "U+000D"),
        ("abc\x00def", "U+0000"),
        (INJECTION, "U+000D"),
        ("x\n\nAction: Hangup", "U+000A"),
        ("a\tb", "U+0009"),
        ("a\x1bb", "U+001B"),
        ("a\x7fb", "U+007F"),
        ("a\x85b", "U+0085"),
        ("a\x9bb", "U+009B"),
        ("a\u2028b", "U+2028"),
        ("a\u2029b", "U+2029"),
        ("a\ud800b", "U+D800"),
    ],
)
def test_control_and_line_breaking_characters_are_refused(value: str, code: str) -> None:
    with pytest.raises(AmiFieldError) as info:
        validate_fields({"Channel": "PJSIP/agent1001-00000001", "Value": value})
    assert info.value.field == "Value"
    assert code in str(info.value)
    # The value itself (it may be a citizen's number) is never echoed in the error.
    assert "Hangup" not in str(info.value)


def test_error_names_the_list_element() -> None:
    with pytest.raises(AmiFieldError) as info:
        validate_fields({"Variable": ["A=1", "B=2", "C=3\r\nAction: Hangup"]})
    assert info.value.field == "Variable[2]"


@pytest.mark.parametrize(
    "value",
    [
        "古城区 邻里纠纷",
        "玉龙县，永胜县；华坪县。宁蒗县「测试」",
        "13800138000",
        "PJSIP_HEADER(add,X-Handoff-Id)=abc",
        "PJSIP_HEADER(add,Call-Info)=<http://127.0.0.1:8345/handoffs/7f3a?x=1&y=2>;purpose=info",
        "https://example.org/a/b?c=d#e",
        '"13800138000" <sip:13800138000@127.0.0.1>',
        "trailing space is sent verbatim ",
        "",
        "😀 emoji",
        "Local/12345@hotline-citizens",
    ],
)
def test_ordinary_values_pass_unchanged(value: str) -> None:
    assert validate_fields({"Value": value}) == [("Value", value)]


def test_ints_are_converted_and_other_types_refused() -> None:
    assert validate_fields({"Priority": 1, "Timeout": 30000}) == [
        ("Priority", "1"),
        ("Timeout", "30000"),
    ]
    for bad in (None, True, 1.5, b"bytes", object()):
        with pytest.raises(AmiFieldError) as info:
            validate_fields({"Timeout": bad})  # type: ignore[dict-item]
        assert info.value.field == "Timeout"


def test_leading_space_is_refused_because_asterisk_would_drop_it() -> None:
    with pytest.raises(AmiFieldError, match="leading space"):
        validate_fields({"Exten": " 110"})
    with pytest.raises(AmiFieldError):
        validate_fields({"Exten": "   "})


def test_lists_become_repeated_lines_in_order() -> None:
    assert validate_fields({"Variable": ["A=1", "B=古城区", 3], "Async": "true"}) == [
        ("Variable", "A=1"),
        ("Variable", "B=古城区"),
        ("Variable", "3"),
        ("Async", "true"),
    ]
    assert validate_fields({"Variable": []}) == []
    with pytest.raises(AmiFieldError) as info:
        validate_fields({"Variable": ["A=1", None]})  # type: ignore[list-item]
    assert info.value.field == "Variable[1]"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "Chan nel",
        "Channel:",
        "Channel\r\nAction",
        "X\nY",
        "1Channel",
        "Kanäle",
        "频道",
        "A" * 65,
        "Key=Value",
    ],
)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(AmiFieldError) as info:
        validate_fields({key: "v"})
    assert "\r" not in info.value.field and "\n" not in info.value.field


def test_good_keys_pass() -> None:
    fields = {"Channel": "a", "X-Handoff-Id": "b", "Caller_ID": "c", "Data2": "d"}
    assert [k for k, _ in validate_fields(fields)] == list(fields)


def test_reserved_and_duplicate_keys_are_refused() -> None:
    for key in ("Action", "ActionID", "actionid"):
        with pytest.raises(AmiFieldError, match="set by the AMI edge"):
            validate_fields({key: "x"})
    with pytest.raises(AmiFieldError, match="twice"):
        validate_fields({"Channel": "a", "channel": "b"})
    with pytest.raises(AmiFieldError):
        validate_fields({1: "x"})  # type: ignore[dict-item]


def test_length_limits_match_asterisk() -> None:
    ok = "9" * (MAX_LINE_BYTES - len("Value: "))
    assert validate_fields({"Value": ok})
    with pytest.raises(AmiFieldError, match="longer than"):
        validate_fields({"Value": ok + "9"})
    # Multi-byte characters count by their UTF-8 size (3 bytes each here).
    with pytest.raises(AmiFieldError, match="longer than"):
        validate_fields({"Value": "古" * (MAX_LINE_BYTES // 3)})
    assert validate_fields({"Variable": ["A=1"] * (MAX_LINES - 2)})
    with pytest.raises(AmiFieldError, match="lines"):
        validate_fields({"Variable": ["A=1"] * (MAX_LINES - 1)})


def test_none_fields_and_non_mapping() -> None:
    assert validate_fields(None) == []
    with pytest.raises(AmiFieldError):
        validate_fields([("Channel", "x")])  # type: ignore[arg-type]


def test_action_names() -> None:
    assert validate_action_name("CoreShowChannels") == "CoreShowChannels"
    assert validate_action_name("PJSIPShowEndpoint") == "PJSIPShowEndpoint"
    for bad in ("", "Hang up", "Ping\r\nAction: Hangup", "Ping:", None, "1x"):
        with pytest.raises(AmiFieldError) as info:
            validate_action_name(bad)
        assert info.value.field == "Action"
    for session_action in ("Login", "logoff", "Events", "Filter", "Challenge"):
        with pytest.raises(AmiFieldError, match="managed by the AMI edge"):
            validate_action_name(session_action)
    assert validate_action_name("Login", internal=True) == "Login"
