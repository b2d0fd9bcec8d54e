"""POST /v1/work-orders, the reminder service's wiring and the [duty_lines] settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lab.sandbox import bridge_settings

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.config.settings import ConfigError, DutyLineSettings
from hotline_bridge.core.commands import Command, CommandResult, Originate
from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs.model import (
    HandoffSnapshot,
)
from hotline_bridge.handoffs.service import HandoffService
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.web.http import MAX_BODY, TokenAuth, make_middlewares
from hotline_bridge.workorders import api as workorders_api
from hotline_bridge.workorders.service import (
    ReminderService,
    WorkOrderService,
    reminder_id_for,
)

TOKENS = {
    "agent": ("tok-agent-1001-xxxxxxxx", Principal("agent-1001", "agent", "1001")),
    "partner": ("tok-partner-110-xxxxxxx", Principal("partner-110", "partner")),
}
CONFIG = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(
        self,
        client: TestClient[web.Request, web.Application],
        store: SqliteHandoffStore,
        reminders: ReminderService,
        sent: list[Command],
        clock: Clock,
    ) -> None:
        self.client, self.store, self.reminders, self.sent, self.clock = (
            client,
            store,
            reminders,
            sent,
            clock,
        )

    async def file(self, body: dict[str, Any], who: str = "agent") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKENS[who][0]}"}
        async with self.client.post("/v1/work-orders", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    def whats(self, handoff_id: str) -> list[str]:
        record = self.store.get(handoff_id)
        assert record is not None
        return [e.data.get("what", e.kind.value) for e in record.events]


async def harness(tmp_path: Path, site: Platform, duty: DutyLineSettings) -> AsyncIterator[Harness]:
    store = SqliteHandoffStore(tmp_path / "h.sqlite3")
    catalog = load_catalog()
    sent: list[Command] = []
    clock = Clock()
    reminders = ReminderService(
        duty,
        caller_id=site.value,
        store=store,
        record_url=lambda h: f"http://127.0.0.1:8345/v1/handoffs/{h}",
        submit=sent.extend,
        clock=clock,
    )
    partner = site.other.value
    service = WorkOrderService(
        HandoffService(store, catalog, site=site, target=partner), reminders, catalog, site=site
    )
    app = web.Application(middlewares=make_middlewares(TokenAuth(TOKENS.values())))
    app[MAX_BODY] = 64 * 1024
    app[workorders_api.WORK_ORDERS] = service
    app.router.add_routes(workorders_api.routes())
    async with TestClient(TestServer(app)) as client:
        yield Harness(client, store, reminders, sent, clock)
    reminders.close()
    store.close()


DUTY = DutyLineSettings(default="PJSIP/110@duty-110", yulong="PJSIP/110@yulong-110")


@pytest.fixture
async def h12345(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in harness(tmp_path, Platform.HOTLINE_12345, DUTY):
        yield h


POLICE = {"channel": "wechat", "category": "police.criminal", "jurisdiction": "yulong"}


async def test_a_complaint_by_sms_is_filed_with_its_channel_and_rings_nobody(
    h12345: Harness,
) -> None:
    status, body = await h12345.file(
        {"channel": "sms", "category": "gov.complaint_department", "citizen_number": "13800138000"}
    )
    assert status == 201, body
    assert body["reminder"] is None and body["advice"]["action"] == "handle_here"
    record = h12345.store.get(body["id"])
    assert record is not None
    assert record.snapshot.kind.value == "work_order" and record.snapshot.channel == "sms"
    assert [i.handoff_id for i in h12345.store.outbox_pending()] == [body["id"]]
    assert h12345.sent == []


async def test_a_police_matter_online_rings_the_jurisdictions_duty_line(h12345: Harness) -> None:
    status, body = await h12345.file(POLICE)
    assert status == 201, body
    assert body["advice"]["alert_110_by_phone"] is True
    assert body["reminder"]["state"] == "dialing" and body["reminder"]["dial"] == (
        "PJSIP/110@yulong-110"
    )
    (cmd,) = h12345.sent
    assert isinstance(cmd, Originate)
    assert cmd.ref == reminder_id_for(body["id"]) and cmd.ref.startswith("r-")
    assert cmd.caller_id == "12345" and cmd.dial == "PJSIP/110@yulong-110"
    assert h12345.whats(body["id"]) == ["created", "duty_reminder_dialing"]

    # The PBX's answers, as the switchboard hands them over.
    h12345.reminders.on_result(CommandResult(cmd, True))
    h12345.reminders.on_event(
        {"Event": "OriginateResponse", "Response": "Success", "Uniqueid": cmd.channel_id}
    )
    h12345.reminders.on_event({"Event": "Hangup", "Uniqueid": cmd.channel_id, "Cause": "16"})
    h12345.reminders.on_event({"Event": "Hangup", "Uniqueid": "someone-else"})
    assert h12345.whats(body["id"])[1:] == [
        "duty_reminder_dialing",
        "duty_reminder_answered",
        "duty_reminder_delivered",
    ]
    async with h12345.client.get(
        f"/v1/work-orders/{body['id']}/reminder",
        headers={"Authorization": f"Bearer {TOKENS['agent'][0]}"},
    ) as resp:
        assert resp.status == 200
        view = await resp.json()
    assert view["state"] == "delivered" and view["outcome"] == "answered"


async def test_an_unanswered_reminder_is_retried_by_the_timer(h12345: Harness) -> None:
    status, body = await h12345.file({**POLICE, "jurisdiction": "ninglang"})
    assert status == 201
    (first,) = h12345.sent
    assert isinstance(first, Originate) and first.dial == "PJSIP/110@duty-110"  # default line
    h12345.reminders.on_event(
        {
            "Event": "OriginateResponse",
            "Response": "Failure",
            "Reason": "3",
            "Uniqueid": first.channel_id,
        }
    )
    rid = reminder_id_for(body["id"])
    reminder = h12345.reminders.get(rid)
    assert reminder is not None and reminder.state.value == "retry_wait"
    # The retry is due retry_after_s (30 s) later: a tick before that does nothing.
    h12345.reminders.tick(h12345.clock.now + 29)
    assert len(h12345.sent) == 1
    h12345.clock.now += 30
    h12345.reminders.tick(h12345.clock.now)  # what the runtime's clock does every second
    second = h12345.sent[-1]
    assert isinstance(second, Originate) and second.channel_id.endswith("-2")
    assert "duty_reminder_retry_scheduled" in h12345.whats(body["id"])


async def test_time_reaches_the_reminders_through_the_switchboard_only(tmp_path: Path) -> None:
    """No capability schedules timers of its own: the runtime's clock ticks the switchboard,
    which ticks every registered capability (here the reminders)."""
    from hotline_bridge.runtime.switchboard import Switchboard

    duty = DutyLineSettings(default="PJSIP/110@duty-110", retry_after_s=0.5)
    async for h in harness(tmp_path, Platform.HOTLINE_12345, duty):
        h.clock.now = 0.0
        status, _ = await h.file(POLICE)
        assert status == 201
        (first,) = h.sent
        assert isinstance(first, Originate)
        h.reminders.on_event(
            {
                "Event": "OriginateResponse",
                "Response": "Failure",
                "Reason": "5",
                "Uniqueid": first.channel_id,
            }
        )
        board = Switchboard(None, None)  # type: ignore[arg-type]  # ticks need neither
        board.listen(h.reminders)
        await asyncio.sleep(0.6)  # real time passing does nothing by itself
        assert len(h.sent) == 1
        board.tick(0.5)
        assert len(h.sent) == 2


async def test_no_duty_line_configured_files_and_notes_it(tmp_path: Path) -> None:
    async for h in harness(tmp_path, Platform.HOTLINE_12345, DutyLineSettings()):
        status, body = await h.file(POLICE)
        assert status == 201 and body["reminder"] is None
        assert h.whats(body["id"]) == ["created", "duty_reminder_skipped"]
        assert h.sent == []


async def test_at_110_an_online_matter_is_filed_to_12345_without_a_call(tmp_path: Path) -> None:
    async for h in harness(tmp_path, Platform.POLICE_110, DUTY):
        status, body = await h.file({**POLICE, "category": "dispute.neighbour"})
        assert status == 201
        assert body["handoff"]["snapshot"]["direction"] == "110->12345"
        assert body["reminder"] is None and h.sent == []


async def test_a_work_order_without_channel_is_filed_by_hand_and_rings_nobody(
    h12345: Harness,
) -> None:
    """The one endpoint also files what an agent writes up without a call (no channel): it is a
    record like any other, and no duty line is rung for it, even for a police matter."""
    status, answer = await h12345.file({"category": "police.public_order"})
    assert status == 201, answer
    assert answer["reminder"] is None and answer["advice"] is None
    assert answer["handoff"]["snapshot"]["kind"] == "work_order"
    assert h12345.sent == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "phone", "category": "gov.complaint_department"}, "channel"),
        ({"channel": "fax"}, "channel"),
        ({"channel": "sms", "category": "no.such"}, "category"),
        ({"channel": "sms", "surprise": 1}, "surprise"),
    ],
)
async def test_bad_bodies_are_422(h12345: Harness, body: dict[str, Any], field: str) -> None:
    status, answer = await h12345.file(body)
    assert status == 422, answer
    assert field in str(answer["error"]["details"])
    assert h12345.sent == []


async def test_partners_may_not_file(h12345: Harness) -> None:
    status, _ = await h12345.file(POLICE, who="partner")
    assert status == 403


def test_snapshot_channel_is_optional_for_older_records() -> None:
    old = {
        "created_at": "2024-05-01T08:00:00Z",
        "created_by": {"kind": "agent", "id": "1001"},
        "kind": "carry_transfer",
        "direction": "12345->110",
        "first_receiver": "12345",
        "target": "110",
        "matter": {},
        "citizen": {},
        "content": {},
        "refs": {},
    }
    assert HandoffSnapshot.model_validate(old).channel is None


# -- settings ----------------------------------------------------------------------------------


def test_duty_line_by_jurisdiction_else_default() -> None:
    assert DUTY.dial_for("yulong") == "PJSIP/110@yulong-110"
    assert DUTY.dial_for("gucheng") == "PJSIP/110@duty-110"
    assert DUTY.dial_for("unknown") == "PJSIP/110@duty-110"
    assert DUTY.dial_for("attempts") == "PJSIP/110@duty-110"  # not a jurisdiction
    assert DutyLineSettings().dial_for("gucheng") is None


def test_sandbox_duty_lines_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_BRIDGE_DUTY_LINES__ATTEMPTS", "2")
    monkeypatch.setenv("HOTLINE_BRIDGE_DUTY_LINES__RETRY_AFTER_S", "1")
    s = bridge_settings(CONFIG)
    assert s.duty_lines.attempts == 2 and s.duty_lines.retry_after_s == 1
    assert s.duty_lines.ring_timeout_s == 20
    assert s.duty_lines.dial_for("gucheng") == "PJSIP/110@duty-110"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DEFAULT", "PJSIP/110@duty-110,,G(x)"),  # same check as targets: no Dial() options
        ("GUCHENG", "SIP/110"),
        ("ATTEMPTS", "0"),
        ("CALLER_ID", "12345 <evil>"),
        ("NOTICE", "vm-youhave,x"),
    ],
)
def test_bad_duty_line_settings_stop_start_up(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(f"HOTLINE_BRIDGE_DUTY_LINES__{var}", value)
    with pytest.raises(ConfigError, match=f"duty_lines.{var.lower()}"):
        bridge_settings(CONFIG)


async def test_the_switchboard_routes_results_by_registration_and_events_to_every_listener() -> (
    None
):
    """Results go back to the capability whose submit function sent the command, whatever its
    ref looks like; every registered capability sees every event, after the call model."""
    from hotline_bridge.runtime.interpreter import Interpreter
    from hotline_bridge.runtime.switchboard import Switchboard

    seen: list[str] = []

    class Stub:
        def __init__(self, name: str) -> None:
            self.name = name
            self.results: list[CommandResult] = []

        def on_result(self, result: CommandResult) -> None:
            self.results.append(result)

        def on_event(self, event: Any) -> None:
            seen.append(f"{self.name}:{event['Event']}")

        def reconcile(self, live: set[str]) -> None:
            seen.append(f"{self.name}:reconcile")

    class Ami:
        def send_batch(self, batch: Any, *, timeout: float | None = None) -> list[Any]:
            async def ok() -> Any:
                from hotline_bridge.ami import AmiResponse

                return AmiResponse({"Response": "Success"})

            return [ok() for _ in batch]

    calls = Stub("calls")
    board = Switchboard(calls, Interpreter(Ami()))  # type: ignore[arg-type]
    reminders, transfers = Stub("reminders"), Stub("transfers")
    submit = board.submitter(reminders.on_result)
    board.submitter(transfers.on_result)
    board.listen(reminders)
    board.listen(transfers)
    # A "t-" ref sent by the reminders still comes back to the reminders.
    cmd = Originate(
        "t-looks-like-a-transfer", "PJSIP/110@duty-110", "Playback", "beep", "12345", 5, "x-1"
    )
    submit([cmd])
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [r.command for r in reminders.results] == [cmd] and transfers.results == []
    board.on_event({"Event": "Hangup", "Uniqueid": "x-1"})
    assert seen == ["calls:Hangup", "reminders:Hangup", "transfers:Hangup"]


async def test_a_flood_of_police_orders_rings_the_duty_line_once_and_then_no_more_than_the_cap(
    tmp_path: Path,
) -> None:
    """50 police work orders for one jurisdiction within seconds: the first rings the duty line;
    those filed while that call is pending are covered by it (one call reminds of all); the
    hourly cap bounds the calls after it. Every order is filed and says what covered it."""
    duty = DutyLineSettings(default="PJSIP/110@duty-110", attempts=1)
    async for h in harness(tmp_path, Platform.HOTLINE_12345, duty):
        h.reminders._calls_per_hour = 2
        ids = []
        for _ in range(50):
            status, body = await h.file(POLICE)
            assert status == 201
            ids.append(body["id"])
        (first,) = h.sent  # one call for 50 orders
        assert isinstance(first, Originate)
        assert all("duty_reminder_merged" in h.whats(i) for i in ids[1:])
        headers = {"Authorization": f"Bearer {TOKENS['agent'][0]}"}
        async with h.client.get(f"/v1/work-orders/{ids[30]}/reminder", headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["reminder_id"] == reminder_id_for(ids[0])
        # The call ends; the next order rings again (2nd call of the hour); then the cap holds.
        h.reminders.on_event({"Event": "OriginateResponse", "Response": "Failure", "Reason": "3",
                              "Uniqueid": first.channel_id})  # fmt: skip
        await h.file(POLICE)
        assert len(h.sent) == 2
        h.reminders.on_event({"Event": "OriginateResponse", "Response": "Failure", "Reason": "3",
                              "Uniqueid": h.sent[1].channel_id})  # type: ignore[union-attr]  # fmt: skip
        status, third = await h.file(POLICE)
        assert status == 201 and third["reminder"] is None and len(h.sent) == 2
        assert "duty_reminder_capped" in h.whats(third["id"])
        # An hour later the desk may be rung again.
        h.clock.now += 3601
        await h.file(POLICE)
        assert len(h.sent) == 3
