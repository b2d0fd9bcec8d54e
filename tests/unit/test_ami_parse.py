"""The AMI header parser: "Key: value" lines, the single space after the colon dropped."""

from __future__ import annotations

import pytest

from hotline_bridge.ami.messages import parse_lines


@pytest.mark.parametrize(
    ("lines", "fields"),
    [
        (["Event: Newstate"], {"Event": "Newstate"}),
        (["Key:value"], {"Key": "value"}),  # no space: the value as written
        (["Key:  value"], {"Key": " value"}),  # only the first space is the separator's
        (["Key:"], {"Key": ""}),
        (["Key: "], {"Key": ""}),
        (["Key: a: b"], {"Key": "a: b"}),  # the first colon ends the key
        (["Ke:y: v"], {"Ke": "y: v"}),
        (["no colon here", "A: 1"], {"A": "1"}),  # a line without a colon carries nothing
        ([": x"], {"": "x"}),
    ],
)
def test_lines_parse_into_first_values(lines: list[str], fields: dict[str, str]) -> None:
    assert parse_lines(lines) == (fields, None)


def test_repeated_keys_keep_every_value_in_order() -> None:
    fields, multi = parse_lines(["Output: a", "ActionID: 7", "Output: b", "Output:c"])
    assert fields == {"Output": "a", "ActionID": "7"}
    assert multi == {"Output": ["a", "b", "c"]}
