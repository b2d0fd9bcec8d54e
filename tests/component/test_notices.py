"""The notice service over a real SQLite store, with the PBX as a list of submitted commands:
one record, pushed only when a linked platform is told, one reminder call per plain line,
receipts folded from the record (so a restart forgets nothing), and the bounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.config.settings import NoticeSettings
from hotline_bridge.core.commands import Command, Originate
from hotline_bridge.core.errors import Conflict, Forbidden, Invalid
from hotline_bridge.core.principal import Principal
from hotline_bridge.directory.loader import load_directory
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.notices.service import NoticeInput, NoticeService, call_id_for, target_of

AGENT = Principal(id="1001", role="agent", agent_id="1001")
T0 = 1_764_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHandoffStore]:
    s = SqliteHandoffStore(tmp_path / "h.sqlite3")
    yield s
    s.close()


def service(
    store: SqliteHandoffStore, sent: list[Command], clock: Clock, **settings: object
) -> NoticeService:
    return NoticeService(
        NoticeSettings.model_validate({"attempts": 2, "retry_after_s": 5, **settings}),
        load_directory(),  # the seed: 110 linked (site 110), the others plain lines
        store,
        load_catalog(),
        site=Platform.HOTLINE_12345,
        record_url=lambda h: f"http://127.0.0.1:8345/v1/handoffs/{h}",
        submit=sent.extend,
        clock=clock,
    )


def body(*targets: str, **fields: object) -> NoticeInput:
    return NoticeInput.model_validate(
        {"targets": list(targets), "jurisdiction": "yulong", **fields}
    )


def test_one_record_pushed_to_the_linked_platform_and_a_call_to_each_line(
    store: SqliteHandoffStore,
) -> None:
    sent: list[Command] = []
    clock = Clock()
    notices = service(store, sent, clock)
    view = notices.notify(AGENT, body("110", "120", "power", event="山体滑坡"))
    hid = view["id"]
    record = store.get(hid)
    assert record is not None and record.snapshot.kind.value == "notice"
    assert record.snapshot.target == "110"  # addressed to the linked platform's site
    assert [i.handoff_id for i in store.outbox_pending()] == [hid]
    dials = sorted(c.dial for c in sent if isinstance(c, Originate))
    assert dials == ["PJSIP/1202@desk-120", "PJSIP/955982@desk-power"]  # Yulong's desks
    assert {c.variables["PJSIP_HEADER(add,X-Handoff-Id)"] for c in sent} == {hid}  # type: ignore[union-attr]
    assert view["state"] == "sending"

    # 110's receipt, 120 answers and hangs up, power never answers (two attempts).
    notices.pushed(hid, "handoff.created")
    c120 = notices.calls[call_id_for(hid, "120")]
    notices.on_event(
        {"Event": "OriginateResponse", "Uniqueid": c120.channel_id, "Response": "Success"}
    )
    notices.on_event({"Event": "Hangup", "Uniqueid": c120.channel_id})
    for attempt in (1, 2):
        power = notices.calls[call_id_for(hid, "power")]
        assert power.attempt == attempt
        notices.on_event(
            {
                "Event": "OriginateResponse",
                "Uniqueid": power.channel_id,
                "Response": "Failure",
                "Reason": "3",
            }
        )
        clock.now += 6
        notices.tick(clock.now)
    view = notices.view(hid)
    assert view["state"] == "partial", view
    got = {r["target"]: r["delivery"] for r in view["recipients"]}
    assert got == {"110": "delivered", "120": "delivered", "power": "failed"}

    # The state is the record's: a fresh service over the same store tells the same.
    again = service(store, [], clock).view(hid)
    assert [(r["target"], r["delivery"]) for r in again["recipients"]] == [
        ("110", "delivered"),
        ("120", "delivered"),
        ("power", "failed"),
    ]


def test_lines_only_nothing_is_pushed_and_duplicate_events_change_nothing(
    store: SqliteHandoffStore,
) -> None:
    sent: list[Command] = []
    notices = service(store, sent, Clock())
    hid = notices.notify(AGENT, body("119"))["id"]
    assert store.outbox_pending() == []
    call = notices.calls[call_id_for(hid, "119")]
    for _ in range(2):  # every handler safe to run twice
        notices.on_event(
            {"Event": "OriginateResponse", "Uniqueid": call.channel_id, "Response": "Success"}
        )
        notices.on_event({"Event": "Hangup", "Uniqueid": call.channel_id})
    record = store.get(hid)
    assert record is not None
    receipts = [
        e.data["what"] for e in record.events if e.data.get("what", "").startswith("notice_d")
    ]
    assert receipts == ["notice_delivered"]
    assert notices.view(hid)["state"] == "delivered"


def test_refusals_name_the_reason(store: SqliteHandoffStore) -> None:
    notices = service(store, [], Clock(), per_hour=1)
    with pytest.raises(Invalid, match="more than once"):
        notices.notify(AGENT, body("119", "119"))
    with pytest.raises(Invalid, match="unknown target 'fire-brigade'"):
        notices.notify(AGENT, body("119", "fire-brigade"))
    with pytest.raises(Forbidden):
        notices.notify(Principal(id="110", role="partner"), body("119"))
    notices.notify(AGENT, body("119"))
    with pytest.raises(Conflict, match="at most 1"):  # a stuck button rings nobody twice
        notices.notify(AGENT, body("120"))


def test_the_reminder_id_names_its_target() -> None:
    assert target_of(call_id_for("h-01ABC", "duty-110")) == "duty-110"
