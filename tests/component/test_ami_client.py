"""AmiClient against a fake AMI server speaking the text protocol on 127.0.0.1.

The fake records every action it receives (per connection, plus every raw byte), so the tests
can assert on what actually went over the wire, e.g. that nothing is re-sent after a reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from hotline_bridge.ami import (
    AmiActionFailed,
    AmiClient,
    AmiDisconnected,
    AmiEvent,
    AmiFieldError,
    AmiState,
    AmiTimeout,
)
from hotline_bridge.ami.protocol import AmiConnection

USER, SECRET = "hotline-bridge", "s3cret"


@dataclass
class Msg:
    """One action as the fake server received it."""

    conn: int
    lines: list[tuple[str, str]]

    def get(self, key: str, default: str = "") -> str:
        for k, v in self.lines:
            if k.lower() == key.lower():
                return v
        return default

    @property
    def action(self) -> str:
        return self.get("Action")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")


Handler = Callable[["FakeConn", Msg], Awaitable[None] | None]


@dataclass
class FakeConn:
    index: int
    writer: asyncio.StreamWriter
    raw: bytearray = field(default_factory=bytearray)

    def write(self, text: str) -> None:
        if not self.writer.is_closing():
            self.writer.write(text.encode("utf-8"))

    def respond(self, msg: Msg, status: str = "Success", **fields: str) -> None:
        body = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self.write(f"Response: {status}\r\nActionID: {msg.action_id}\r\n{body}\r\n")

    def event(self, name: str, **fields: str) -> None:
        body = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self.write(f"Event: {name}\r\nPrivilege: call,all\r\n{body}\r\n")

    def drop(self) -> None:
        self.writer.transport.abort()


class FakeAmi:
    """A scriptable AMI server. ``handlers`` maps lower-case action names to behaviours."""

    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.Server | None = None
        self.conns: list[FakeConn] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.received: list[Msg] = []
        self.handlers: dict[str, Handler] = {}
        self.silent_ping = False
        self.fully_booted = True
        self.secret = SECRET

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection (Asterisk going away)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in self.conns:
            conn.drop()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def actions(self, name: str) -> list[Msg]:
        return [m for m in self.received if m.action.lower() == name.lower()]

    def total_raw(self) -> int:
        return sum(len(c.raw) for c in self.conns)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FakeConn(len(self.conns), writer)
        self.conns.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        conn.write("Asterisk Call Manager/11.0.0\r\n")
        try:
            while True:
                data = await reader.readuntil(b"\r\n\r\n")
                conn.raw += data
                lines = []
                for line in data.decode("utf-8").split("\r\n"):
                    if line:
                        key, _, value = line.partition(": ")
                        lines.append((key, value))
                msg = Msg(conn.index, lines)
                self.received.append(msg)
                result = self._handle(conn, msg)
                if result is not None:
                    await result
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _handle(self, conn: FakeConn, msg: Msg) -> Awaitable[None] | None:
        name = msg.action.lower()
        if name in self.handlers:
            return self.handlers[name](conn, msg)
        if name == "login":
            if msg.get("Username") == USER and msg.get("Secret") == self.secret:
                conn.respond(msg, Message="Authentication accepted")
                if self.fully_booted:
                    conn.write(
                        "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 5\r\n"
                        "LastReload: 5\r\nStatus: Fully Booted\r\n\r\n"
                    )
            else:
                conn.respond(msg, "Error", Message="Authentication failed")
        elif name == "ping":
            if not self.silent_ping:
                conn.respond(msg, Ping="Pong", Timestamp="1.0")
        elif name == "logoff":
            conn.respond(msg, "Goodbye", Message="Thanks for all the fish.")
        else:
            conn.respond(msg, Message="OK")
        return None


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    yield server
    await server.stop()


def make_client(fake: FakeAmi, **kwargs: object) -> AmiClient:
    options: dict[str, object] = {
        "action_timeout": 2.0,
        "ping_interval": 30.0,
        "ping_timeout": 1.0,
        "backoff_initial": 0.02,
        "backoff_max": 0.1,
    }
    options.update(kwargs)
    return AmiClient("127.0.0.1", fake.port, USER, SECRET, **options)  # type: ignore[arg-type]


@pytest.fixture
async def client(fake: FakeAmi) -> AsyncIterator[AmiClient]:
    c = make_client(fake)
    await c.start()
    await c.wait_ready(2)
    yield c
    await c.close()


class Waits:
    """An injected reconnect sleep: records the delay asked for, waits only a moment."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0.005)


async def until(predicate: Callable[[], object], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# -- login and state --------------------------------------------------------------------------


async def test_logs_in_waits_for_fully_booted_and_reports_state(fake: FakeAmi) -> None:
    fake.fully_booted = False
    c = make_client(fake, event_classes=["call", "agent"])
    states: list[str] = []
    c.add_state_listener(states.append)
    await c.start()
    await until(lambda: c.state == AmiState.AUTHENTICATING and bool(fake.actions("Login")))
    await asyncio.sleep(0.05)
    assert not c.connected  # logged in, but Asterisk has not said FullyBooted yet
    fake.conns[0].write(
        "Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"
    )
    await c.wait_ready(1)
    assert c.connected and c.version == "11.0.0"
    assert states == ["connecting", "authenticating", "ready"]
    login = fake.actions("Login")[0]
    assert login.get("Username") == USER
    assert login.get("Events") == "agent,call,system"  # system is forced: FullyBooted/Shutdown
    assert login.action_id
    await c.close()
    assert states[-1] == "closed" and c.state == AmiState.CLOSED
    assert fake.actions("Logoff")


async def test_send_when_not_ready_fails_fast(fake: FakeAmi) -> None:
    c = make_client(fake)
    with pytest.raises(AmiDisconnected):
        await c.send("Ping")
    await c.close()
    with pytest.raises(AmiDisconnected):
        await c.start()


async def test_login_failure_retries_with_backoff_until_fixed(fake: FakeAmi) -> None:
    fake.secret = "other"
    c = make_client(fake)
    await c.start()
    await until(lambda: len(fake.actions("Login")) >= 3)
    assert not c.connected
    assert c.stats.connect_failures >= 2
    fake.secret = SECRET
    await c.wait_ready(2)
    await c.close()


# -- actions ----------------------------------------------------------------------------------


async def test_responses_matched_by_action_id_out_of_order_with_events(fake: FakeAmi) -> None:
    held: list[tuple[FakeConn, Msg]] = []
    fake.handlers["getvar"] = lambda conn, msg: held.append((conn, msg))
    c = make_client(fake)
    seen: list[str] = []
    c.subscribe(lambda ev: seen.append(ev.get("Seq")) if ev.name == "Newchannel" else None)
    await c.start()
    await c.wait_ready(2)
    first = asyncio.create_task(c.send("Getvar", {"Variable": "A"}))
    second = asyncio.create_task(c.send("Getvar", {"Variable": "B"}))
    third = asyncio.create_task(c.send("Getvar", {"Variable": "C"}))
    await until(lambda: len(held) == 3)
    by_var = {msg.get("Variable"): (conn, msg) for conn, msg in held}
    conn = by_var["A"][0]
    conn.event("Newchannel", Seq="1")
    conn.respond(by_var["C"][1], Variable="C", Value="vc")
    conn.event("Newchannel", Seq="2")
    conn.respond(by_var["A"][1], Variable="A", Value="va")
    conn.respond(by_var["B"][1], Variable="B", Value="vb")
    conn.event("Newchannel", Seq="3")
    assert (await first).get("Value") == "va"
    assert (await second).get("value") == "vb"  # case-insensitive lookup
    response = await third
    assert response.success and response.get("Value") == "vc"
    assert response.action_id == by_var["C"][1].action_id
    await until(lambda: len(seen) == 3)
    assert seen == ["1", "2", "3"]
    await c.close()


async def test_timeout_raises_and_cleans_up(fake: FakeAmi, client: AmiClient) -> None:
    held: list[tuple[FakeConn, Msg]] = []
    fake.handlers["redirect"] = lambda conn, msg: held.append((conn, msg))
    started = time.monotonic()
    with pytest.raises(AmiTimeout) as info:
        await client.send("Redirect", {"Channel": "PJSIP/a-1", "Exten": "110"}, timeout=0.2)
    assert 0.19 < time.monotonic() - started < 1.0
    assert info.value.action == "Redirect" and info.value.action_id == held[0][1].action_id
    conn = client._conn
    assert conn is not None and conn.pending_count == 0
    assert client.stats.actions_timed_out == 1
    # The late answer is dropped quietly and the session keeps working.
    held[0][0].respond(held[0][1], Message="Redirect successful")
    assert (await client.send("Ping")).get("Ping") == "Pong"
    assert client.connected


async def test_action_failed_carries_the_message(fake: FakeAmi, client: AmiClient) -> None:
    fake.handlers["hangup"] = lambda conn, msg: conn.respond(
        msg, "Error", Message="No such channel"
    )
    with pytest.raises(AmiActionFailed) as info:
        await client.send("Hangup", {"Channel": "PJSIP/none-1"})
    assert info.value.message == "No such channel"
    assert info.value.action == "Hangup"
    assert not info.value.response.success


async def test_successfully_queued_response_does_not_crash(
    fake: FakeAmi, client: AmiClient
) -> None:
    # panoramisk 1.4 raises KeyError: 'async' in its protocol handler on these responses.
    def queued(conn: FakeConn, msg: Msg) -> None:
        conn.respond(msg, Message=f"{msg.action} successfully queued")

    for name in ("playdtmf", "atxfer", "originate"):
        fake.handlers[name] = queued
    assert (await client.send("PlayDTMF", {"Channel": "PJSIP/a-1", "Digit": "1"})).success
    assert (await client.send("Atxfer", {"Channel": "PJSIP/a-1", "Exten": "110"})).success
    response = await client.send(
        "Originate", {"Channel": "Local/1@x", "Application": "Wait", "Data": 1, "Async": "true"}
    )
    assert response.message == "Originate successfully queued"
    assert client.connected and (await client.send("Ping")).success


async def test_list_action_collects_items_until_complete(fake: FakeAmi, client: AmiClient) -> None:
    def core_show_channels(conn: FakeConn, msg: Msg) -> None:
        aid = msg.action_id
        conn.write(
            f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n"
            "Message: Channels will follow\r\n\r\n"
        )
        conn.write(
            f"Event: CoreShowChannel\r\nActionID: {aid}\r\nChannel: A\r\nUniqueid: 1.1\r\n\r\n"
        )
        conn.event("Hangup", Uniqueid="9.9")  # unrelated live event in the middle
        conn.write(
            f"Event: CoreShowChannel\r\nActionID: {aid}\r\nChannel: B\r\nUniqueid: 1.2\r\n\r\n"
        )
        conn.write(
            f"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nEventList: Complete\r\n"
            "ListItems: 2\r\n\r\n"
        )

    fake.handlers["coreshowchannels"] = core_show_channels
    live: list[AmiEvent] = []
    client.subscribe(live.append)
    items = await client.send_list("CoreShowChannels")
    assert [(e.name, e.get("Channel")) for e in items] == [
        ("CoreShowChannel", "A"),
        ("CoreShowChannel", "B"),
    ]
    await until(lambda: len(live) == 1)
    assert live[0].name == "Hangup"  # list items are not broadcast, live events are


async def test_originate_response_event_is_an_event_even_during_a_list(
    fake: FakeAmi, client: AmiClient
) -> None:
    held: list[tuple[FakeConn, Msg]] = []
    fake.handlers["coreshowchannels"] = lambda conn, msg: held.append((conn, msg))
    got: list[AmiEvent] = []
    client.subscribe(got.append)
    originate = await client.send("Originate", {"Channel": "Local/1@x", "Async": "true"})
    listing = asyncio.create_task(client.send_list("CoreShowChannels"))
    await until(lambda: held)
    conn, msg = held[0]
    # The async Originate's outcome arrives while the list is pending; it has a Response field.
    conn.write(
        f"Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {originate.action_id}\r\n"
        "Response: Success\r\nChannel: Local/1@x-00000000;1\r\nUniqueid: 1.5\r\n\r\n"
    )
    conn.write(
        f"Response: Success\r\nActionID: {msg.action_id}\r\nEventList: start\r\n\r\n"
        f"Event: CoreShowChannelsComplete\r\nActionID: {msg.action_id}\r\n"
        "EventList: Complete\r\n\r\n"
    )
    assert await listing == []
    names = [e.name for e in got]
    assert "OriginateResponse" in names
    event = got[names.index("OriginateResponse")]
    assert event.action_id == originate.action_id and event.get("Response") == "Success"


async def test_list_action_error_and_empty_list(fake: FakeAmi, client: AmiClient) -> None:
    fake.handlers["confbridgelist"] = lambda conn, msg: conn.respond(
        msg, "Error", Message="No active conferences."
    )
    started = time.monotonic()
    with pytest.raises(AmiActionFailed, match="No active conferences"):
        await client.send_list("ConfbridgeList", {"Conference": "room-1"})
    assert time.monotonic() - started < 0.5  # panoramisk would wait for items forever

    def bridge_list(conn: FakeConn, msg: Msg) -> None:
        conn.write(
            f"Response: Success\r\nActionID: {msg.action_id}\r\nEventList: start\r\n"
            "Message: Bridge listing will follow\r\n\r\n"
            f"Event: BridgeListComplete\r\nActionID: {msg.action_id}\r\nEventList: Complete\r\n"
            "ListItems: 0\r\n\r\n"
        )

    fake.handlers["bridgelist"] = bridge_list
    assert await client.send_list("BridgeList") == []


async def test_list_items_pass_even_when_the_filter_would_drop_them(fake: FakeAmi) -> None:
    def status(conn: FakeConn, msg: Msg) -> None:
        aid = msg.action_id
        conn.write(
            f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n"
            "Message: Channel status will follow\r\n\r\n"
            f"Event: Status\r\nActionID: {aid}\r\nChannel: A\r\n\r\n"
            f"Event: StatusComplete\r\nActionID: {aid}\r\nEventList: Complete\r\nItems: 1\r\n\r\n"
        )

    fake.handlers["status"] = status
    c = make_client(fake, events=["Hangup"])
    await c.start()
    await c.wait_ready(2)
    items = await c.send_list("Status")
    assert [e.get("Channel") for e in items] == ["A"]
    await c.close()


async def test_bad_field_writes_nothing_to_the_socket(fake: FakeAmi, client: AmiClient) -> None:
    await asyncio.sleep(0.05)
    before_bytes, before_sent = fake.total_raw(), client.stats.actions_sent
    bad_calls: list[tuple[str, dict[str, object]]] = [
        ("Setvar", {"Channel": "PJSIP/a-1", "Variable": "X", "Value": "x\r\n\r\nAction: Hangup"}),
        ("Originate", {"Channel": "Local/1@x", "Variable": ["A=1", "B=2\nAction: Hangup"]}),
        ("Setvar", {"Channel\r\nAction: Hangup": "x"}),
        ("Hangup\r\nChannel: PJSIP/a-1", {}),
        ("Setvar", {"Value": None}),
        ("Logoff", {}),
    ]
    for action, fields in bad_calls:
        with pytest.raises(AmiFieldError):
            await client.send(action, fields)  # type: ignore[arg-type]
    with pytest.raises(AmiFieldError):
        await client.send_list("CoreShowChannels", {"X": "\x00"})
    await asyncio.sleep(0.1)
    assert fake.total_raw() == before_bytes
    assert client.stats.actions_sent == before_sent
    assert [m.action for m in fake.received] == ["Login"]
    assert client._conn is not None and client._conn.pending_count == 0


# -- connection loss --------------------------------------------------------------------------


async def test_no_resend_after_reconnect(fake: FakeAmi) -> None:
    # The server drops the link as soon as it reads the transfer, before answering.
    fake.handlers["blindtransfer"] = lambda conn, msg: conn.drop()
    c = make_client(fake)
    hook_calls: list[int] = []

    async def hook() -> None:
        hook_calls.append(len(fake.conns))

    c.add_resync_hook(hook)
    await c.start()
    await c.wait_ready(2)
    with pytest.raises(AmiDisconnected, match="not re-sent"):
        await c.send("BlindTransfer", {"Channel": "PJSIP/agent1001-1", "Exten": "110"})
    await until(lambda: c.connected and len(fake.conns) == 2)
    await until(lambda: len(hook_calls) == 2)
    assert (await c.send("Ping")).success
    await asyncio.sleep(0.2)
    transfers = fake.actions("BlindTransfer")
    assert len(transfers) == 1 and transfers[0].conn == 0
    assert [m.action for m in fake.received if m.conn == 1] == ["Login", "Ping"]
    assert c.stats.reconnects == 1 and c.stats.disconnects == 1
    await c.close()


async def test_pending_actions_all_fail_when_the_link_drops(
    fake: FakeAmi, client: AmiClient
) -> None:
    fake.handlers["redirect"] = lambda conn, msg: None  # never answered
    tasks = [
        asyncio.create_task(client.send("Redirect", {"Channel": f"PJSIP/a-{i}", "Exten": "110"}))
        for i in range(5)
    ]
    await until(lambda: len(fake.actions("Redirect")) == 5)
    fake.conns[0].drop()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, AmiDisconnected) for r in results)
    await client.wait_ready(2)
    await asyncio.sleep(0.1)
    assert len(fake.actions("Redirect")) == 5


async def test_shutdown_event_counts_as_connection_loss(fake: FakeAmi, client: AmiClient) -> None:
    fake.handlers["redirect"] = lambda conn, msg: None
    states: list[str] = []
    client.add_state_listener(states.append)
    pending = asyncio.create_task(client.send("Redirect", {"Channel": "PJSIP/a-1"}))
    await until(lambda: bool(fake.actions("Redirect")))
    # Asterisk announces the restart; the socket stays open a little longer.
    fake.conns[0].write(
        "Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\n"
    )
    with pytest.raises(AmiDisconnected):
        await pending
    await until(lambda: client.connected and len(fake.conns) == 2)
    assert states[:2] == ["disconnected", "connecting"] and states[-1] == "ready"


async def test_shutting_down_refusals_end_the_session(fake: FakeAmi) -> None:
    # Asterisk 22 during a slow `core restart now`: socket open, every action refused.
    shutting_down = True

    def refuse(conn: FakeConn, msg: Msg) -> None:
        if shutting_down:
            conn.respond(msg, "Error", Message="Asterisk is shutting down")
        else:
            conn.respond(msg, Ping="Pong")

    fake.handlers["ping"] = refuse
    fake.handlers["redirect"] = refuse
    c = make_client(fake, ping_interval=0.1)
    await c.start()
    await c.wait_ready(2)
    with pytest.raises(AmiActionFailed, match="shutting down"):
        await c.send("Redirect", {"Channel": "PJSIP/a-1"})
    assert not c.connected  # the refusal also ends the session at once
    with pytest.raises(AmiDisconnected):
        await c.send("Ping")
    await until(lambda: len(fake.conns) >= 2)
    # Reconnected sessions are dropped again by the keep-alive while refusals continue.
    await until(lambda: c.stats.keepalive_failures >= 1)
    shutting_down = False
    await c.wait_ready(2)
    conns = len(fake.conns)
    await asyncio.sleep(0.3)
    assert c.connected and len(fake.conns) == conns
    await c.close()


async def test_logins_refused_while_shutting_down_are_retried_within_a_second(
    fake: FakeAmi,
) -> None:
    refusing = True

    def login(conn: FakeConn, msg: Msg) -> None:
        if refusing:
            conn.respond(msg, "Error", Message="Asterisk is shutting down")
        else:
            conn.respond(msg, Message="Authentication accepted")
            conn.write("Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n")

    fake.handlers["login"] = login
    waits = Waits()
    c = make_client(fake, backoff_initial=0.05, backoff_max=5.0, sleep=waits, jitter=lambda: 1.0)
    await c.start()
    await until(lambda: len(waits.delays) >= 8, within=5)
    # Plain backoff would be at 1.6-5 s by the 6th wait; during a restart the cap is ~1 s.
    assert max(waits.delays) <= 1.0
    assert waits.delays[:5] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8])
    refusing = False
    await c.wait_ready(2)
    await c.close()


async def test_keepalive_detects_a_silent_server(fake: FakeAmi) -> None:
    fake.silent_ping = True  # accepts and logs in, but never answers Ping
    c = make_client(fake, ping_interval=0.1, ping_timeout=0.15)
    await c.start()
    await c.wait_ready(2)
    started = time.monotonic()
    await until(lambda: len(fake.conns) >= 2, within=3)
    assert time.monotonic() - started < 1.5
    assert c.stats.keepalive_failures >= 1
    fake.silent_ping = False
    await c.wait_ready(2)
    conns = len(fake.conns)
    await asyncio.sleep(0.5)  # pings now answered: no further reconnects
    assert len(fake.conns) == conns and c.connected
    await c.close()


async def test_an_overloaded_server_still_streaming_events_is_slow_not_dead(
    fake: FakeAmi,
) -> None:
    fake.silent_ping = True  # Ping replies never come back in time...
    c = make_client(fake, ping_interval=0.1, ping_timeout=0.15)
    await c.start()
    await c.wait_ready(2)
    stop = asyncio.Event()

    async def stream() -> None:  # ...but the socket keeps delivering events
        while not stop.is_set():
            fake.conns[-1].event("Newstate", Uniqueid="1.1")
            await asyncio.sleep(0.02)

    streamer = asyncio.create_task(stream())
    try:
        await until(lambda: c.stats.keepalive_slow >= 2, within=3)
        assert len(fake.conns) == 1 and c.connected
        assert c.stats.keepalive_failures == 0
    finally:
        stop.set()
        await streamer
    # Once nothing at all arrives, the session is declared dead as before.
    await until(lambda: len(fake.conns) >= 2, within=3)
    assert c.stats.keepalive_failures >= 1
    await c.close()


async def test_backoff_reconnect_when_port_closed_then_reopened(fake: FakeAmi) -> None:
    waits = Waits()
    c = make_client(fake, backoff_initial=0.05, backoff_max=0.4, sleep=waits, jitter=lambda: 1.0)
    await c.start()
    await c.wait_ready(2)
    await fake.stop()  # Asterisk gone: connects are now refused
    await until(lambda: len(waits.delays) >= 6, within=5)
    # Exponential up to the cap, not a hot loop (jitter pinned to its top here).
    assert waits.delays[:6] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.4, 0.4])
    assert c.stats.connect_failures >= 5
    await fake.start()  # same port
    await c.wait_ready(2)
    assert c.stats.reconnects == 1
    assert (await c.send("Ping")).success
    await c.close()


async def test_a_flapping_session_keeps_backing_off(fake: FakeAmi) -> None:
    def login_then_drop(conn: FakeConn, msg: Msg) -> None:
        conn.respond(msg, Message="Authentication accepted")
        conn.write("Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n")
        asyncio.get_running_loop().call_later(0.01, conn.drop)

    fake.handlers["login"] = login_then_drop
    waits = Waits()
    c = make_client(fake, backoff_initial=0.05, backoff_max=0.4, sleep=waits, jitter=lambda: 1.0)
    await c.start()
    await until(lambda: len(waits.delays) >= 5, within=5)
    # Resetting the backoff on every login would wait 0.05 s every time.
    assert waits.delays[:5] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.4])
    assert c.stats.connects >= 4
    await c.close()


async def test_resync_hooks_run_after_each_ready_and_may_send(fake: FakeAmi) -> None:
    def core_show_channels(conn: FakeConn, msg: Msg) -> None:
        conn.write(
            f"Response: Success\r\nActionID: {msg.action_id}\r\nEventList: start\r\n"
            "Message: Channels will follow\r\n\r\n"
            f"Event: CoreShowChannelsComplete\r\nActionID: {msg.action_id}\r\n"
            "EventList: Complete\r\nListItems: 0\r\n\r\n"
        )

    fake.handlers["coreshowchannels"] = core_show_channels
    c = make_client(fake)
    runs: list[int] = []

    async def rebuild() -> None:
        await c.send_list("CoreShowChannels")
        runs.append(len(fake.conns))

    async def broken() -> None:
        raise RuntimeError("a failing hook must not stop the others")

    c.add_resync_hook(broken)
    c.add_resync_hook(rebuild)
    await c.start()
    await c.wait_ready(2)
    await until(lambda: runs == [1])
    fake.conns[0].drop()
    await until(lambda: runs == [1, 2])
    assert c.stats.resyncs == 2
    await c.close()


async def test_close_fails_pending_and_stops_reconnecting(fake: FakeAmi, client: AmiClient) -> None:
    fake.handlers["redirect"] = lambda conn, msg: None
    pending = asyncio.create_task(client.send("Redirect", {"Channel": "PJSIP/a-1"}))
    await until(lambda: bool(fake.actions("Redirect")))
    await client.close()
    with pytest.raises(AmiDisconnected):
        await pending
    await asyncio.sleep(0.2)
    assert len(fake.conns) == 1 and client.state == AmiState.CLOSED
    with pytest.raises(AmiDisconnected):
        await client.wait_ready(0.1)


async def test_not_an_ami_server(fake: FakeAmi) -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = AmiClient("127.0.0.1", port, USER, SECRET, backoff_initial=0.05, backoff_max=0.1)
    await c.start()
    with pytest.raises(AmiTimeout):
        await c.wait_ready(0.3)
    assert c.stats.connect_failures >= 1
    await c.close()
    server.close()


# -- events -----------------------------------------------------------------------------------


async def test_events_delivered_in_order_even_when_split_mid_character(
    fake: FakeAmi, client: AmiClient
) -> None:
    got: list[tuple[str, str]] = []
    client.subscribe(lambda ev: got.append((ev.get("Seq"), ev.get("Data"))))
    stream = "".join(
        f"Event: Newchannel\r\nPrivilege: call,all\r\nSeq: {i}\r\nData: 古城区 邻里纠纷 {i}\r\n\r\n"
        for i in range(2000)
    ).encode("utf-8")
    writer = fake.conns[0].writer
    # Odd chunk sizes cut through CRLFs and through the 3-byte UTF-8 characters.
    for start in range(0, len(stream), 997):
        writer.write(stream[start : start + 997])
        await writer.drain()
    await until(lambda: len(got) == 2000)
    assert got == [(str(i), f"古城区 邻里纠纷 {i}") for i in range(2000)]


async def test_handler_exception_does_not_break_ordering(fake: FakeAmi, client: AmiClient) -> None:
    got: list[str] = []

    def flaky(ev: AmiEvent) -> None:
        if ev.get("Seq") == "1":
            raise ValueError("boom")

    client.subscribe(flaky)
    unsubscribe = client.subscribe(lambda ev: got.append(ev.get("Seq")))
    for i in range(3):
        fake.conns[0].event("Hangup", Seq=str(i))
    await until(lambda: len(got) == 3)
    assert got == ["0", "1", "2"] and client.stats.handler_errors == 1
    unsubscribe()
    fake.conns[0].event("Hangup", Seq="3")
    await asyncio.sleep(0.05)
    assert got == ["0", "1", "2"]


async def test_event_name_filter(fake: FakeAmi) -> None:
    c = make_client(fake, events=["Newchannel", "hangup"])
    got: list[str] = []
    c.subscribe(lambda ev: got.append(ev.name))
    await c.start()
    await c.wait_ready(2)
    conn = fake.conns[0]
    for name in ("Newchannel", "VarSet", "Newexten", "Hangup", "RTCPSent", "HANGUP"):
        conn.event(name, Uniqueid="1.1")
    conn.event("Newchannel", Uniqueid="1.2")
    await until(lambda: len(got) == 4)
    await asyncio.sleep(0.05)
    assert got == ["Newchannel", "Hangup", "HANGUP", "Newchannel"]
    assert c.stats.events_dropped == 3  # FullyBooted is internal, not counted as dropped
    assert c.stats.events_received == 8
    await c.close()


async def test_event_fields(fake: FakeAmi, client: AmiClient) -> None:
    got: list[AmiEvent] = []
    client.subscribe(got.append)
    fake.conns[0].write(
        "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/carrier-00000001\r\n"
        "CallerIDNum: 13800138000\r\nConnectedLineName: \r\nUniqueid: 1764400000.1\r\n"
        "Linkedid: 1764400000.1\r\nChanVariable: A=1\r\nChanVariable: B=x: y\r\nEmpty:\r\n\r\n"
    )
    await until(lambda: len(got) == 1)
    ev = got[0]
    assert ev.name == "Newchannel"
    assert ev.get("uniqueid") == ev["Linkedid"] == "1764400000.1"
    assert ev.get("ConnectedLineName", "?") == "" and ev.get("Empty", "?") == ""
    assert ev.get("Missing") == "" and "Missing" not in ev and "channel" in ev
    assert ev.get_all("ChanVariable") == ["A=1", "B=x: y"]
    assert ev.get("ChanVariable") == "A=1"
    assert "13800138000" not in repr(ev)
    with pytest.raises(KeyError):
        ev["Missing"]


# -- ingestion speed --------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        from hotline_bridge.ami import AmiStats

        self.stats = AmiStats()
        self.count = 0

    def _deliver(self, event: AmiEvent) -> None:
        self.count += 1
        event.get("Uniqueid")

    def _lost(self, conn: AmiConnection) -> None:
        pass


def _event_stream(n: int) -> bytes:
    one = (
        "Event: Newstate\r\nPrivilege: call,all\r\nChannel: PJSIP/agent1001-0000002a\r\n"
        "ChannelState: 6\r\nChannelStateDesc: Up\r\nCallerIDNum: 13800138000\r\n"
        "CallerIDName: 13800138000\r\nConnectedLineNum: 1001\r\nConnectedLineName: 坐席1001\r\n"
        "Language: en\r\nAccountCode: \r\nContext: hotline-agents\r\nExten: s\r\nPriority: 1\r\n"
        "Uniqueid: 1764400000.42\r\nLinkedid: 1764400000.41\r\n\r\n"
    )
    return (one * n).encode("utf-8")


@pytest.mark.parametrize("wanted", [None, frozenset({b"newstate"}), frozenset({b"hangup"})])
async def test_a_large_stream_in_64k_chunks_is_counted_and_filtered_exactly(
    wanted: frozenset[bytes] | None,
) -> None:
    """Events split across chunk boundaries are all seen and filtered by name. (How fast is the
    benchmark's business: ``make bench`` runs lab/microbench.py's ingestion figures.)"""
    sink = _Sink()
    conn = AmiConnection(sink, wanted)
    conn.data_received(b"Asterisk Call Manager/11.0.0\r\n")
    n = 20_000
    data = _event_stream(n)
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    for chunk in chunks:
        conn.data_received(chunk)
    assert sink.stats.events_received == n
    assert sink.count == (0 if wanted == frozenset({b"hangup"}) else n)


# -- batches (the interpreter's pipelined Setvar x N + BlindTransfer) --------------------------


async def test_send_batch_writes_every_action_at_once_in_order(
    fake: FakeAmi, client: AmiClient
) -> None:
    fake.handlers["blindtransfer"] = lambda conn, msg: conn.respond(msg, "Error", Message="No")
    conn = client._conn
    assert conn is not None and conn._transport is not None
    writes: list[bytes] = []
    real_write = conn._transport.write

    def counting_write(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        real_write(data)

    conn._transport.write = counting_write  # type: ignore[method-assign]
    sent_before = client.stats.actions_sent
    replies = client.send_batch(
        [
            ("Setvar", {"Channel": "PJSIP/c-1", "Variable": "A", "Value": "1"}),
            ("Setvar", {"Channel": "PJSIP/c-1", "Variable": "B", "Value": "x\r\nAction: Hangup"}),
            ("Setvar", {"Channel": "PJSIP/c-1", "Variable": "C", "Value": "3"}),
            ("BlindTransfer", {"Channel": "PJSIP/a-1", "Context": "x", "Exten": "carry"}),
        ]
    )
    # Written before anything was awaited, with one write, the refused action left out.
    assert len(writes) == 1 and writes[0].count(b"Action: ") == 3
    assert client.stats.actions_sent == sent_before + 3
    outcomes = await asyncio.gather(*replies, return_exceptions=True)
    assert outcomes[0].success and outcomes[2].success  # type: ignore[union-attr]
    assert isinstance(outcomes[1], AmiFieldError)
    assert isinstance(outcomes[3], AmiActionFailed) and outcomes[3].message == "No"
    await until(lambda: len(fake.actions("BlindTransfer")) == 1)
    assert [m.get("Variable") or m.action for m in fake.received[1:]] == [
        "A",
        "C",
        "BlindTransfer",
    ]
    assert conn.pending_count == 0


async def test_send_batch_when_not_ready_or_unanswered(fake: FakeAmi) -> None:
    c = make_client(fake, action_timeout=0.2)
    replies = c.send_batch([("Ping", None), ("Ping", None)])
    assert all(
        isinstance(r, AmiDisconnected)
        for r in await asyncio.gather(*replies, return_exceptions=True)
    )
    await c.start()
    await c.wait_ready(2)
    fake.handlers["redirect"] = lambda conn, msg: None  # never answered
    (reply,) = c.send_batch([("Redirect", {"Channel": "PJSIP/a-1", "Exten": "110"})])
    with pytest.raises(AmiTimeout, match=r"within 0\.2s"):
        await reply
    assert c._conn is not None and c._conn.pending_count == 0
    await c.close()


async def test_interpreter_writes_a_batch_before_returning_and_reports_in_order(
    fake: FakeAmi, client: AmiClient
) -> None:
    from hotline_bridge.core.commands import BlindTransfer, CommandResult, SetVar
    from hotline_bridge.runtime.interpreter import Interpreter

    results: list[CommandResult] = []
    latencies: list[str] = []
    others: list[CommandResult] = []
    interp = Interpreter(client, on_latency=lambda a, s: latencies.append(a))
    submit = interp.submitter(results.append)
    interp.submitter(others.append)  # another capability's: sees none of these results
    sent_before = client.stats.actions_sent
    submit(
        [
            SetVar("t-1", "PJSIP/c-1", "HANDOFF_ID", "h-1"),
            SetVar("t-1", "PJSIP/c-1", "HANDOFF_URL", "bad\nvalue"),
            BlindTransfer("t-1", "PJSIP/a-1", "hotline-handoff", "carry"),
        ]
    )
    assert client.stats.actions_sent == sent_before + 2  # on the wire already
    await interp.drain()
    assert [(type(r.command).__name__, r.ok) for r in results] == [
        ("SetVar", True),
        ("SetVar", False),
        ("BlindTransfer", True),
    ]
    assert results[1].reason.startswith("refused before sending")
    assert latencies == ["Setvar", "Setvar", "BlindTransfer"]
    assert others == []


def test_the_edge_runs_on_uvloop() -> None:
    """``event_loop = "uvloop"``: its transports are not asyncio's classes (a type check on
    them once refused every AMI connection)."""
    from hotline_bridge.runtime.cli import loop_factory

    factory = loop_factory("uvloop")  # the event_loop = "uvloop" setting's loop
    assert factory is not None

    async def session() -> tuple[str, list[str]]:
        server = FakeAmi()
        await server.start()
        c = make_client(server)
        seen: list[str] = []
        c.subscribe(lambda ev: seen.append(ev.name))
        try:
            await c.start()
            await c.wait_ready(2)
            response = await c.send("Ping")
            return response.status, seen
        finally:
            await c.close()
            await server.stop()

    with asyncio.Runner(loop_factory=factory) as runner:
        status, _ = runner.run(session())
        assert type(runner.get_loop()).__module__.startswith("uvloop")
    assert status == "Success"
