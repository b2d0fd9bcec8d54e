"""The store-backed HandoffRecorder: hotkey payload → durable record; machine notes → events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lab.sandbox import bridge_settings
from pydantic import ValidationError

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.config.settings import ConfigError
from hotline_bridge.core.errors import Invalid
from hotline_bridge.handoffs.intake import (
    HandoffInput,
)
from hotline_bridge.handoffs.model import (
    EventKind,
    HandoffKind,
    Status,
)
from hotline_bridge.handoffs.recorder import StoreRecorder, event_for, open_recorder
from hotline_bridge.handoffs.status import (
    fold,
)
from hotline_bridge.handoffs.store import HandoffFilter, PageRequest, SqliteHandoffStore

TOPOLOGY = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
T = 1_714_550_400.0  # 2024-05-01T08:00:00Z
CALL = LiveCall(
    call_id="1714550390.7",
    citizen_number="13800138000",
    citizen_channel="PJSIP/carrier-00000007",
    agent_id="1001",
    agent_channel="PJSIP/agent1001-00000008",
    agent_uniqueid="1714550390.8",
    bridge_id="b-1",
    linkedid="1714550390.7",
    since=T - 30,
)


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[StoreRecorder]:
    store = SqliteHandoffStore(tmp_path / "h.sqlite3")
    yield StoreRecorder(
        store, load_catalog(), site=Platform.HOTLINE_12345, public_url="http://127.0.0.1:8345/"
    )
    store.close()


EMPTY = HandoffInput()


def test_open_writes_a_durable_record_from_an_empty_payload(recorder: StoreRecorder) -> None:
    hid = recorder.open(
        kind="carry_transfer", call=CALL, target="110", handoff=HandoffInput(), now=T
    )
    record = recorder.store.get(hid)
    assert record is not None
    snap = record.snapshot
    assert snap.kind is HandoffKind.CARRY_TRANSFER
    assert snap.direction.value == "12345->110"
    assert snap.citizen.number == "13800138000"
    assert snap.refs.call_id == "1714550390.7" and snap.refs.linked_id == "1714550390.7"
    assert snap.call_answered_at == datetime(2024, 5, 1, 7, 59, 30, tzinfo=UTC)
    assert snap.created_by.id == "1001"
    assert recorder.url(hid) == f"http://127.0.0.1:8345/v1/handoffs/{hid}"
    assert len(recorder.store.outbox_pending(now=datetime(2100, 1, 1, tzinfo=UTC))) == 1


def test_open_with_a_category(recorder: StoreRecorder) -> None:
    hid = recorder.open(
        kind="three_way",
        call=CALL,
        target="110",
        handoff=HandoffInput(category="police.criminal", narrative="有人入室盗窃"),
        now=T,
    )
    record = recorder.store.get(hid)
    assert record is not None and record.snapshot.matter.matter_class == "police_matter"


def test_open_refuses_a_payload_that_contradicts_the_catalog(recorder: StoreRecorder) -> None:
    payload = HandoffInput.model_validate(
        {"category": "dispute.family", "matter_class": "police_matter"}
    )
    with pytest.raises(Invalid, match="matter_class"):
        recorder.open(kind="carry_transfer", call=CALL, target="110", handoff=payload, now=T)
    assert recorder.store.list(HandoffFilter(), PageRequest()).items == ()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"work_order_no": "x\r\nAction: Hangup"}, "work_order_no"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_payload_is_refused_before_the_recorder_naming_the_field(
    payload: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        HandoffInput.model_validate(payload)


def test_anonymous_caller_id_is_kept_as_no_number(recorder: StoreRecorder) -> None:
    call = _with_number("anonymous")
    hid = recorder.open(
        kind="carry_transfer", call=call, target="110", handoff=HandoffInput(), now=T
    )
    record = recorder.store.get(hid)
    assert record is not None and record.snapshot.citizen.number is None


def _fields(call: LiveCall) -> dict[str, object]:
    return {f: getattr(call, f) for f in LiveCall.__slots__}


def _with_number(number: str) -> LiveCall:
    return LiveCall(**{**_fields(CALL), "citizen_number": number})  # type: ignore[arg-type]


def test_notes_become_events_and_move_status(recorder: StoreRecorder) -> None:
    hid = recorder.open(
        kind="carry_transfer", call=CALL, target="110", handoff=HandoffInput(), now=T
    )
    for i, (what, detail) in enumerate(
        [
            ("carry_transfer_requested", "target 110"),
            ("pbx_accepted", ""),
            ("partner_ringing", ""),
            ("partner_failed", "BUSY"),
            ("citizen_returned", "1001"),
        ]
    ):
        recorder.note(hid, what, detail, T + i)
    record = recorder.store.get(hid)
    assert record is not None
    kinds = [e.kind for e in record.events]
    assert kinds == [
        EventKind.CREATED,
        EventKind.TRANSFER_REQUESTED,
        EventKind.CALL_PROGRESS,
        EventKind.PARTNER_RINGING,
        EventKind.PARTNER_FAILED,
        EventKind.CITIZEN_RETURNED,
    ]
    state = fold(record)
    assert state.status is Status.FAILED and state.call_outcome == "busy"
    assert record.events[2].data == {"what": "pbx_accepted"}
    assert record.events[5].data == {"agent_id": "1001"}


def test_three_way_notes(recorder: StoreRecorder) -> None:
    hid = recorder.open(kind="three_way", call=CALL, target="110", handoff=EMPTY, now=T)
    # The conference machine's timeline names, in the order a leave produces them.
    for i, what in enumerate(
        [
            "three_way_requested",
            "moved_to_room",
            "citizen_joined",
            "agent_joined",
            "partner_joined",
            "three_way",
            "agent_left",  # the agent's channel left the room...
            "agent_left_room",  # ...so the conference is now citizen + partner
        ]
    ):
        recorder.note(hid, what, "", T + i)
    recorder.note(hid, "ended", "citizen hung up", T + 10)
    record = recorder.store.get(hid)
    assert record is not None
    state = fold(record)
    assert state.status is Status.PUSHED and state.call_outcome == "answered"
    tl = state.timeline
    assert tl.three_way_started and tl.agent_left and tl.three_way_ended and tl.partner_answered
    assert [e.kind for e in record.events].count(EventKind.AGENT_LEFT) == 1


def test_note_on_unknown_handoff_does_not_raise(recorder: StoreRecorder) -> None:
    recorder.note("h-00000000000000000000000000", "partner_ringing", "", T)


@pytest.mark.parametrize(
    ("detail", "outcome"),
    [("BUSY", "busy"), ("NOANSWER", "no_answer"), ("5", "busy"), ("0", "failed"), ("", "failed")],
)
def test_partner_failed_outcome(detail: str, outcome: str) -> None:
    ev = event_for("partner_failed", detail, datetime(2024, 5, 1, tzinfo=UTC))
    assert ev.data["outcome"] == outcome


def test_open_recorder_from_settings(tmp_path: Path) -> None:
    settings = bridge_settings(
        TOPOLOGY, bridge={"mode": "sandbox", "return_queue": "q", "store_path": tmp_path / "s.db"}
    )
    with open_recorder(settings) as recorder:
        assert recorder.site is Platform.HOTLINE_12345
        assert recorder.url("h-x").startswith("http://127.0.0.1:8345/v1/handoffs/")
        service = recorder.service("110")
        assert service.store is recorder.store
    assert (tmp_path / "s.db").is_file()


def test_broken_catalog_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "matters.toml"
    bad.write_text("[catalog]\nversion = 1\ntitle = \n", encoding="utf-8")
    settings = bridge_settings(
        TOPOLOGY,
        bridge={
            "mode": "sandbox",
            "return_queue": "q",
            "store_path": tmp_path / "s.db",
            "catalog_path": bad,
        },
    )
    with pytest.raises(ConfigError, match=r"matters\.toml:3"), open_recorder(settings):
        pass
