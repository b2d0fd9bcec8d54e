"""The FastAGI server and hooks against a fake Asterisk: a client that speaks AGI on loopback.

The client sends the environment Asterisk would send, answers each command ``200 result=1``
(or not at all, or wrongly) and records the commands; the hooks run over a real SQLite store.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from lab.sandbox import bridge_settings

from hotline_bridge.agi.hooks import AgiHooks
from hotline_bridge.agi.server import AgiCall, AgiServer, Route, rebind_delay
from hotline_bridge.catalog import load_catalog
from hotline_bridge.config.settings import AgiSettings, ClusterNode, ConfigError
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    HandoffKind,
    HandoffRecord,
)
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.runtime.app import Runtime
from hotline_bridge.runtime.cluster import NodeService

CATALOG = load_catalog()
NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
NUISANCE_CALLER = "13700137000"
SETTINGS = AgiSettings(
    port=0,
    request_timeout_s=0.5,
    receive_wait_s=0.6,
    receive_poll_s=0.02,
    jurisdiction_by_number={"0888612345": Jurisdiction.HUAPING},
    jurisdiction_by_endpoint={"carrier": Jurisdiction.GUCHENG},
    nuisance_threshold=2,
    nuisance_window_days=30,
)


def env_block(route: str, *args: str, **extra: str) -> bytes:
    env = {
        "agi_network": "yes",
        "agi_network_script": route,
        "agi_request": f"agi://127.0.0.1:4573/{route}",
        "agi_channel": "PJSIP/carrier-0000001a",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1764432000.42",
        "agi_version": "22.10.1",
        "agi_callerid": "13800138000",
        "agi_calleridname": "unknown",
        "agi_dnid": "12345",
        "agi_context": "hotline-citizens",
        "agi_extension": "12345",
        "agi_priority": "8",
        "agi_enhanced": "0.0",
        **extra,
    }
    for i, arg in enumerate(args, start=1):
        env[f"agi_arg_{i}"] = arg
    return "".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n"


def ok(command: str) -> str | None:
    # As Asterisk answers: SET VARIABLE 1, an application run by EXEC its own result (MSet: 0).
    return "200 result=0" if command.startswith("EXEC ") else "200 result=1"


def assignments(commands: list[str]) -> list[tuple[str, str]]:
    """The variables the commands set, in order, whether one ``EXEC MSet`` or ``SET VARIABLE``
    each (the hook uses MSet where the values allow it: one round trip)."""
    out: list[tuple[str, str]] = []
    for command in commands:
        if command.startswith('EXEC MSet "'):
            for pair in command[len('EXEC MSet "') : -1].split(","):
                name, _, value = pair.partition("=")
                out.append((name, value))
        elif m := re.fullmatch(r'SET VARIABLE (\w+) "(.*)"', command):
            out.append((m.group(1), m.group(2)))
        else:
            out.append(("?", command))
    return out


async def fake_asterisk(
    port: int, block: bytes, reply: Callable[[str], str | None] = ok, timeout: float = 5.0
) -> list[str]:
    """Send ``block``, answer every command with ``reply`` (None: stay silent) until the server
    closes the connection; the commands received, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(block)
    await writer.drain()
    commands: list[str] = []
    try:
        while line := await asyncio.wait_for(reader.readline(), timeout):
            command = line.decode().rstrip("\n")
            commands.append(command)
            answer = reply(command)
            if answer is not None:
                writer.write(answer.encode() + b"\n")
                await writer.drain()
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return commands


def handoff(number: str = "13800138000", **data: Any) -> HandoffRecord:
    return new_handoff(
        HandoffInput(**data),
        handoff_id=new_handoff_id(),
        kind=HandoffKind.WORK_ORDER,
        direction=Direction.TO_110,
        target="110",
        citizen_number=number,
        created_by=Actor.agent("1001"),
        catalog=CATALOG,
        now=NOW - timedelta(days=1),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHandoffStore]:
    s = SqliteHandoffStore(tmp_path / "h.sqlite3")
    for _ in range(2):
        s.create(handoff(NUISANCE_CALLER, category="police.harassment"))
    yield s
    s.close()


@pytest.fixture
async def server(store: SqliteHandoffStore) -> AsyncIterator[AgiServer]:
    hooks = AgiHooks(SETTINGS, store, CATALOG, clock=lambda: NOW)
    srv = AgiServer("127.0.0.1", 0, hooks.routes(), command_timeout_s=0.3, env_timeout_s=0.3)
    await srv.start()
    yield srv
    await srv.close()


def port_of(server: AgiServer) -> int:
    return server.address[1]


# -- the entry hook ----------------------------------------------------------------------------


async def test_entry_sets_jurisdiction_and_nuisance_then_logs_the_call(
    server: AgiServer, store: SqliteHandoffStore
) -> None:
    commands = await fake_asterisk(port_of(server), env_block("entry"))
    assert assignments(commands) == [
        ("CALL_JURISDICTION", "gucheng"),
        ("CALL_NUISANCE", "no"),
    ]
    call = store.get_call("1764432000.42")
    assert call is not None
    assert (call.kind, call.caller, call.dialled, call.endpoint) == (
        "citizen",
        "13800138000",
        "12345",
        "carrier",
    )
    assert call.jurisdiction is Jurisdiction.GUCHENG and call.nuisance is False
    health = server.health()
    assert health["state"] == "listening" and health["answered"] == 1
    assert health["latency_ms"]["entry"]["n"] == 1


async def test_entry_flags_a_repeated_nuisance_caller(
    server: AgiServer, store: SqliteHandoffStore
) -> None:
    block = env_block(
        "entry", agi_callerid=NUISANCE_CALLER, agi_extension="0888612345", agi_uniqueid="9.1"
    )
    commands = await fake_asterisk(port_of(server), block)
    assert assignments(commands) == [
        ("CALL_JURISDICTION", "huaping"),
        ("CALL_NUISANCE", "yes"),
    ]
    call = store.get_call("9.1")
    assert call is not None and call.nuisance is True


async def test_entry_without_a_number_cannot_tell_nuisance(server: AgiServer) -> None:
    block = env_block("entry", agi_callerid="anonymous", agi_channel="PJSIP/other-00000001")
    commands = await fake_asterisk(port_of(server), block)
    assert assignments(commands) == [
        ("CALL_JURISDICTION", "unknown"),
        ("CALL_NUISANCE", "unknown"),
    ]


async def test_a_broken_store_still_answers(server: AgiServer, store: SqliteHandoffStore) -> None:
    store.close()  # every query now raises sqlite3.ProgrammingError
    commands = await fake_asterisk(port_of(server), env_block("entry"))
    assert assignments(commands) == [
        ("CALL_JURISDICTION", "gucheng"),
        ("CALL_NUISANCE", "unknown"),
    ]
    assert server.stats.answered == 1 and server.stats.failed == 0


async def test_entry_answers_fast(server: AgiServer) -> None:
    durations = []
    for i in range(50):
        t0 = time.perf_counter()
        await fake_asterisk(port_of(server), env_block("entry", agi_uniqueid=f"1.{i}"))
        durations.append(time.perf_counter() - t0)
    durations.sort()
    assert durations[len(durations) // 2] < 0.05, durations


# -- the receiving hook ------------------------------------------------------------------------


async def test_receive_routes_by_the_records_urgency(
    server: AgiServer, store: SqliteHandoffStore
) -> None:
    urgent = handoff(
        danger_to_life=True, matter_class="unclear_responsibility", jurisdiction="yulong"
    )
    normal = handoff(category="gov.violation_report")
    store.create(urgent)
    store.create(normal)
    ctx = {"agi_context": "hotline-from-partner", "agi_channel": "PJSIP/partner-110-00000003"}
    got = await fake_asterisk(port_of(server), env_block("receive", urgent.id, **ctx))
    assert assignments(got) == [
        ("HANDOFF_RECEIVED_ID", urgent.id),
        ("HANDOFF_CLASS", "unclear_responsibility"),
        ("HANDOFF_JURISDICTION", "yulong"),
        ("HANDOFF_URGENCY", "urgent"),
    ]
    block = env_block("receive", normal.id, **{**ctx, "agi_uniqueid": "2.2"})
    got = await fake_asterisk(port_of(server), block)
    assert assignments(got)[1:] == [
        ("HANDOFF_CLASS", "non_police_matter"),
        ("HANDOFF_JURISDICTION", "unknown"),
        ("HANDOFF_URGENCY", "normal"),
    ]
    call = store.get_call("2.2")
    assert call is not None
    assert (call.kind, call.handoff_id, call.urgency, call.endpoint) == (
        "from_partner",
        normal.id,
        "normal",
        "partner-110",
    )


async def test_receive_waits_for_a_record_whose_push_is_in_flight(
    server: AgiServer, store: SqliteHandoffStore
) -> None:
    late = handoff(matter_class="police_matter")

    async def push_later() -> None:
        await asyncio.sleep(0.2)
        store.create(late)

    pusher = asyncio.create_task(push_later())
    t0 = time.perf_counter()
    got = await fake_asterisk(port_of(server), env_block("receive", late.id))
    waited = time.perf_counter() - t0
    await pusher
    assert assignments(got)[-1] == ("HANDOFF_URGENCY", "urgent")
    assert 0.2 <= waited < SETTINGS.receive_wait_s


async def test_receive_of_an_unknown_id_gives_up_after_the_wait(server: AgiServer) -> None:
    t0 = time.perf_counter()
    got = await fake_asterisk(port_of(server), env_block("receive", new_handoff_id()))
    waited = time.perf_counter() - t0
    assert assignments(got)[-1] == ("HANDOFF_URGENCY", "unknown")
    assert SETTINGS.receive_wait_s <= waited < SETTINGS.receive_wait_s + 0.3


@pytest.mark.parametrize(
    "arg", [None, "none", "h-x\nSET VARIABLE X 1", "H-01M8M3H46ESEKNAC2JVYQ5J6TE"]
)
async def test_receive_without_a_usable_id_does_not_wait(
    server: AgiServer, arg: str | None
) -> None:
    args = () if arg is None else (arg.split("\n")[0],)
    t0 = time.perf_counter()
    got = await fake_asterisk(port_of(server), env_block("receive", *args))
    assert time.perf_counter() - t0 < 0.2
    assert assignments(got) == [
        ("HANDOFF_RECEIVED_ID", ""),
        ("HANDOFF_CLASS", ""),
        ("HANDOFF_JURISDICTION", "unknown"),
        ("HANDOFF_URGENCY", "unknown"),
    ]


# -- a misbehaving peer --------------------------------------------------------------------------


async def still_serves(server: AgiServer) -> None:
    got = await fake_asterisk(port_of(server), env_block("entry", agi_uniqueid="ok.1"))
    assert len(assignments(got)) == 2


async def test_a_slow_client_is_dropped_at_the_deadline(server: AgiServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    writer.write(env_block("entry")[:40])  # half an environment, then nothing
    await writer.drain()
    t0 = time.perf_counter()
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server
    assert time.perf_counter() - t0 < 0.6
    writer.close()
    assert server.stats.malformed == 1
    await still_serves(server)


async def test_a_client_that_never_answers_is_dropped(
    server: AgiServer, store: SqliteHandoffStore
) -> None:
    t0 = time.perf_counter()
    got = await fake_asterisk(port_of(server), env_block("entry"), reply=lambda _c: None)
    assert got == ['EXEC MSet "CALL_JURISDICTION=gucheng,CALL_NUISANCE=no"']  # then silence
    assert time.perf_counter() - t0 < SETTINGS.request_timeout_s + 0.3
    assert server.stats.timed_out == 1
    assert store.get_call("1764432000.42") is None  # the hook never finished
    await still_serves(server)


async def test_a_client_that_closes_early_does_not_spin(server: AgiServer) -> None:
    # panoramisk's own handler loops forever (100% CPU) on EOF before the blank line.
    for partial in (b"", b"agi_request: agi://h/entry\n", b"agi_request: agi:"):
        _, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(partial)
        writer.write_eof()
        await writer.drain()
        writer.close()
    t0 = time.process_time()
    await asyncio.sleep(0.2)
    assert time.process_time() - t0 < 0.1
    assert server.stats.malformed == 3 and not server._app.active  # type: ignore[union-attr]
    await still_serves(server)


@pytest.mark.parametrize(
    "block",
    [
        b"GET / HTTP/1.1\nHost: 127.0.0.1\n\n",
        b"\xff\xfe\x00\x01garbage\n\n",
        b"agi_request: agi://h/entry\nAction: Hangup\n\n",
        b"agi_request: " + b"x" * 20_000 + b"\n\n",
    ],
)
async def test_a_malformed_request_gets_no_command(server: AgiServer, block: bytes) -> None:
    assert await fake_asterisk(port_of(server), block) == []
    assert server.stats.malformed == 1
    await still_serves(server)


async def test_an_unknown_hook_gets_no_command(server: AgiServer) -> None:
    assert await fake_asterisk(port_of(server), env_block("dial-anything")) == []
    assert server.stats.unknown_route == 1


@pytest.mark.parametrize(
    ("answer", "counter"),
    [
        ("HANGUP", "hangups"),  # the caller hung up: stop at once
        ("511 Command Not Permitted on a dead channel or intercept routine", "failed"),
        (  # several lines, of which panoramisk reads two: stop before the rest is misread
            "520-Invalid command syntax.  Proper usage follows:\n"
            " Usage: SET VARIABLE <variablename> <value>\n"
            "520 End of proper usage.",
            "failed",
        ),
        ("200 result=-1", "failed"),
    ],
)
async def test_any_answer_but_200_ends_the_session(
    server: AgiServer, answer: str, counter: str
) -> None:
    got = await fake_asterisk(port_of(server), env_block("entry"), reply=lambda _c: answer)
    assert len(got) == 1
    assert getattr(server.stats, counter) == 1


async def test_asterisk_closing_mid_hook_is_a_hangup(server: AgiServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    writer.write(env_block("entry"))
    await reader.readline()  # the first command; then Asterisk goes away
    writer.close()
    await asyncio.sleep(0.1)
    assert server.stats.hangups == 1
    await still_serves(server)


# -- the server itself ---------------------------------------------------------------------------


async def test_only_async_handlers_are_accepted() -> None:
    def plain(call: AgiCall) -> None: ...

    srv = AgiServer("127.0.0.1", 0, {"x": Route(plain, 1.0)})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def"):
        await srv.start()


async def test_a_taken_port_is_reported_not_hidden(server: AgiServer) -> None:
    other = AgiServer("127.0.0.1", port_of(server), {})
    with pytest.raises(OSError):
        await other.start()
    assert other.health()["state"] == "failed" and other.health()["error"]


def test_a_taken_port_is_retried_every_second_at_first_then_every_five() -> None:
    assert [rebind_delay(n) for n in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


@pytest.fixture
def held_port() -> Iterator[socket.socket]:
    """A port held by a listening socket of the test's own (a former owner's, say)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


async def test_a_taken_port_is_bound_as_soon_as_it_is_free_and_healthz_says_so(
    store: SqliteHandoffStore, held_port: socket.socket
) -> None:
    port = held_port.getsockname()[1]
    hooks = AgiHooks(SETTINGS, store, CATALOG, clock=lambda: NOW)
    srv = AgiServer("127.0.0.1", port, hooks.routes(), command_timeout_s=0.3, env_timeout_s=0.3)
    try:
        assert not await srv.start_or_retry(lambda attempt: 0.05)
        await asyncio.sleep(0.3)
        h = srv.health()
        assert h["state"] == "retrying" and h["error"] and h["bind_retries"] >= 3, h
        assert h["address"] == f"127.0.0.1:{port}"
        # What a cluster replica's /healthz lists for the PBX it owns.
        svc = NodeService(ClusterNode(name="pbx-1", api_port=1), asyncio.Event(), NOW)
        svc.runtime = cast(Runtime, SimpleNamespace(agi=srv))
        assert svc.hooks() == {
            "state": "retrying",
            "address": f"127.0.0.1:{port}",
            "answered": 0,
            "error": h["error"],
            "bind_retries": h["bind_retries"],
        }
        held_port.close()  # the former owner lets go
        deadline = time.monotonic() + 2
        while srv.state != "listening":
            assert time.monotonic() < deadline, srv.health()
            await asyncio.sleep(0.02)
        await still_serves(srv)
        assert svc.hooks() is not None and svc.hooks()["state"] == "listening"  # type: ignore[index]
    finally:
        await srv.close()


async def test_closing_stops_the_retries(held_port: socket.socket) -> None:
    port = held_port.getsockname()[1]
    srv = AgiServer("127.0.0.1", port, {})
    assert not await srv.start_or_retry(lambda attempt: 0.05)
    await srv.close()  # the PBX is no longer this process's
    held_port.close()
    await asyncio.sleep(0.2)
    assert srv.state == "stopped" and srv.address == ("127.0.0.1", port)
    with socket.create_server(("127.0.0.1", port)):  # nobody took the port meanwhile
        pass


async def test_close_cancels_hooks_in_progress(store: SqliteHandoffStore) -> None:
    started = asyncio.Event()

    async def stuck(call: AgiCall) -> None:
        started.set()
        await asyncio.sleep(60)

    srv = AgiServer("127.0.0.1", 0, {"stuck": Route(stuck, 60.0)})
    await srv.start()
    client = asyncio.create_task(fake_asterisk(srv.address[1], env_block("stuck")))
    await asyncio.wait_for(started.wait(), 2)
    t0 = time.perf_counter()
    await srv.close()
    assert time.perf_counter() - t0 < 1
    assert await asyncio.wait_for(client, 2) == []
    assert srv.health()["state"] == "stopped"


async def test_connections_beyond_the_cap_are_closed_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hotline_bridge.agi.server as server_module

    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 1)
    release = asyncio.Event()

    async def hold(call: AgiCall) -> None:
        await release.wait()

    srv = AgiServer("127.0.0.1", 0, {"hold": Route(hold, 5.0)})
    await srv.start()
    first = asyncio.create_task(fake_asterisk(srv.address[1], env_block("hold")))
    await asyncio.sleep(0.1)
    assert await fake_asterisk(srv.address[1], env_block("hold")) == []
    assert srv.stats.refused == 1
    release.set()
    await first
    await srv.close()


def test_settings_keep_the_server_on_loopback() -> None:
    assert AgiSettings(host="127.0.0.2").host == "127.0.0.2"
    for host in ("0.0.0.0", "192.168.1.10", "localhost", ""):  # noqa: S104
        with pytest.raises(ValueError, match="loopback"):
            AgiSettings(host=host)


def test_unknown_nuisance_categories_stop_start_up(store: SqliteHandoffStore) -> None:
    bad = SETTINGS.model_copy(update={"nuisance_categories": ("police.harassment", "no.such")})
    with pytest.raises(ConfigError, match=r"no\.such"):
        AgiHooks(bad, store, CATALOG)


def test_the_sandbox_topology_configures_the_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    topology = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
    agi = bridge_settings(topology).agi
    assert (agi.host, agi.port, agi.enabled) == ("127.0.0.1", 4573, True)
    assert agi.jurisdiction_by_endpoint == {
        "carrier": Jurisdiction.GUCHENG,
        "carrier-yulong": Jurisdiction.YULONG,
    }
    assert agi.nuisance_categories == ("police.harassment",)
    monkeypatch.setenv("HOTLINE_BRIDGE_AGI__JURISDICTION_BY_NUMBER", '{"0888612345": "huaping"}')
    monkeypatch.setenv("HOTLINE_BRIDGE_AGI__ENABLED", "false")
    agi = bridge_settings(topology).agi
    assert agi.jurisdiction_by_number == {"0888612345": Jurisdiction.HUAPING}
    assert agi.enabled is False
    monkeypatch.setenv("HOTLINE_BRIDGE_AGI__JURISDICTION_BY_NUMBER", '{"12345": "atlantis"}')
    with pytest.raises(ConfigError, match="jurisdiction_by_number"):
        bridge_settings(topology)


# -- the shared key ------------------------------------------------------------------------------

KEY = "agi-key-for-these-tests-0001"


@pytest.fixture
async def keyed(store: SqliteHandoffStore) -> AsyncIterator[AgiServer]:
    hooks = AgiHooks(SETTINGS, store, CATALOG, clock=lambda: NOW)
    srv = AgiServer(
        "127.0.0.1", 0, hooks.routes(), command_timeout_s=0.3, env_timeout_s=0.3, key=KEY
    )
    await srv.start()
    yield srv
    await srv.close()


@pytest.mark.parametrize("script", ["entry", "entry?key=", "entry?key=guess", f"entry?k={KEY}"])
async def test_a_request_without_the_key_gets_no_command(keyed: AgiServer, script: str) -> None:
    """Another local process cannot ask the hooks about a caller: no variable is set."""
    assert await fake_asterisk(port_of(keyed), env_block(script)) == []
    assert keyed.stats.wrong_key == 1 and keyed.stats.answered == 0


async def test_the_dialplans_request_with_the_key_is_answered(keyed: AgiServer) -> None:
    commands = await fake_asterisk(port_of(keyed), env_block(f"entry?key={KEY}"))
    assert any("CALL_JURISDICTION" in c for c in commands)
    assert keyed.stats.answered == 1


async def test_the_entry_hook_sets_its_variables_in_one_round_trip(server: AgiServer) -> None:
    commands = await fake_asterisk(port_of(server), env_block("entry"))
    assert commands == ['EXEC MSet "CALL_JURISDICTION=gucheng,CALL_NUISANCE=no"']


async def test_a_pbx_without_mset_gets_the_variables_one_by_one(server: AgiServer) -> None:
    def no_mset(command: str) -> str:
        return "200 result=-2" if command.startswith("EXEC ") else "200 result=1"

    commands = await fake_asterisk(port_of(server), env_block("entry"), reply=no_mset)
    assert commands == [
        'EXEC MSet "CALL_JURISDICTION=gucheng,CALL_NUISANCE=no"',
        'SET VARIABLE CALL_JURISDICTION "gucheng"',
        'SET VARIABLE CALL_NUISANCE "no"',
    ]


def test_values_mset_would_parse_are_never_sent_through_it() -> None:
    from hotline_bridge.agi.protocol import AgiValueError, set_variables_at_once

    assert set_variables_at_once({"A": "x", "B": ""}) == 'EXEC MSet "A=x,B="'
    assert set_variables_at_once({"A": "x"}) is None  # one variable: SET VARIABLE
    for value in ("a,b", 'a"b', "a\\b", "a|b", "a=b", "a b", "${X}"):
        assert set_variables_at_once({"A": "x", "B": value}) is None, value
    # Each fits a SET VARIABLE line; together they pass the line limit.
    assert set_variables_at_once({"A": "x" * 600, "B": "y" * 600}) is None
    with pytest.raises(AgiValueError):
        set_variables_at_once({"A": "x", "B-C": "y"})
