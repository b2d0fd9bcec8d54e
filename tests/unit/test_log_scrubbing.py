"""The log filter: numbers masked, secret fields dropped, credentials quoted in text redacted."""

from __future__ import annotations

from hotline_bridge.runtime.logs import scrub_personal_data


def scrub(**fields: object) -> dict[str, object]:
    return dict(scrub_personal_data(None, "info", dict(fields)))


def test_a_token_quoted_in_an_exception_is_redacted() -> None:
    # What aiohttp's parser logs for a malformed request: the header line, token and all.
    text = "BadHttpMessage: 400, message: Invalid header value char:\\n  Authorization: Bearer sandbox-token-agent-1001\\x01"
    out = scrub(exception=text, event="Error handling request")
    assert "sandbox-token-agent-1001" not in str(out["exception"])
    assert "Bearer [redacted]" in str(out["exception"])
    out = scrub(detail="basic Zm9vOmJhcg== and more")
    assert out["detail"] == "basic [redacted] and more"


def test_numbers_are_masked_and_secret_fields_dropped() -> None:
    out = scrub(citizen="13800138000", token="t-123", nested={"secret": "x", "n": "13800138000"})
    assert out == {
        "citizen": "138****8000",
        "token": "[redacted]",
        "nested": {"secret": "[redacted]", "n": "138****8000"},
    }


def test_words_that_merely_contain_bearer_are_left_alone() -> None:
    assert scrub(event="the ticket bearer was told")["event"] == "the ticket bearer was told"


def test_a_clean_line_is_left_as_it_is_and_values_never_join_into_a_number() -> None:
    fields = {"event": "carry transfer state", "call_id": "1764432000.42", "state": "dialing"}
    assert scrub(**fields) == fields
    # The clean-line check reads all strings at once; two halves are not one number.
    assert scrub(a="138 0013", b="8000") == {"a": "138 0013", "b": "8000"}
    # One number among clean values is still masked, the others kept.
    out = scrub(event="note", call_id="1764432000.42", detail="from 13800138000", n=3)
    assert out == {
        "event": "note",
        "call_id": "1764432000.42",
        "detail": "from 138****8000",
        "n": 3,
    }
