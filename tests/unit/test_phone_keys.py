"""Phone keys: the key table's rules, the PBX config rendered from it (the product's and the
sandbox's agree), what a press does, and the RFC 4733 captures SIPp phones dial them with."""

from __future__ import annotations

import asyncio
import itertools
import re
import struct
from typing import Any

import pytest
from lab.dtmf import DTMF_DIR, presses
from lab.sandbox import DEFAULT_TOPOLOGY, load_topology, sandbox_module

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.config.settings import ConfigError, PhoneKeySettings, load_settings
from hotline_bridge.core.errors import Conflict
from hotline_bridge.directory.configured import DirectoryError, configured_directory
from hotline_bridge.keys.asterisk import (
    agent_menu_lines,
    applicationmap_lines,
    asterisk_config,
    dynamic_features,
)
from hotline_bridge.keys.service import PhoneKeyService
from hotline_bridge.web.limits import RateLimiter


def sandbox_settings(**changes: Any) -> dict[str, Any]:
    topo = load_topology(DEFAULT_TOPOLOGY)
    topo.update(changes)
    return dict(sandbox_module().bridge_config(topo))


KEYS = [
    {"name": "carry110", "digits": "*1", "action": "carry_transfer", "target": "110"},
    {"name": "leave", "digits": "*0", "action": "leave"},
]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([{**KEYS[0], "target": "999"}], "key carry110: unknown target 999"),
        ([{"name": "carry", "digits": "*1", "action": "carry_transfer"}], "needs a target"),
        ([{**KEYS[1], "target": "110"}], "takes no target"),
        ([KEYS[0], {**KEYS[0], "digits": "*5"}], "duplicate key name carry110"),
        ([KEYS[0], {**KEYS[0], "name": "carry2", "digits": "*1"}], r"\*1 starts \*1"),
        ([KEYS[0], {**KEYS[0], "name": "carry2", "digits": "*12"}], r"\*1 starts \*12"),
        ([{**KEYS[0], "digits": "*1x"}], "digits"),
    ],
)
def test_a_key_table_that_cannot_work_is_refused_naming_the_key(
    keys: list[dict[str, Any]], message: str
) -> None:
    # Refused when the settings load, or (a target not in the directory file) when the
    # directory is read at start-up: either way before the bridge serves.
    try:
        settings = load_settings(**sandbox_settings(phone_keys=keys))
        configured_directory(settings)
    except (ConfigError, DirectoryError) as exc:
        assert re.search(message, str(exc)), exc
    else:
        pytest.fail("the key table was accepted")


def test_the_same_digits_may_mean_one_thing_in_a_call_and_another_in_the_room() -> None:
    # *1 carries on a two-party call and leaves in a three-way room: two places, no clash.
    keys = [KEYS[0], {**KEYS[1], "digits": "*1"}]
    assert len(load_settings(**sandbox_settings(phone_keys=keys)).phone_keys) == 2


def test_the_pbx_side_of_the_sandbox_keys_is_what_the_bridge_prints() -> None:
    """asterisk/sandbox.py renders the PBX from the topology; `hotline-bridge phone-keys` prints
    the same lines from the bridge's settings, which integrators paste into their PBX."""
    topo = load_topology(DEFAULT_TOPOLOGY)
    files = sandbox_module().render_files(topo)
    keys = load_settings(**sandbox_settings()).phone_keys
    assert applicationmap_lines(keys) == [
        "carry110 => *1,self/callee,AGI(${HOTLINE_AGI}/key?key=${HOTLINE_AGI_KEY},carry110)",
        "threeway110 => *2,self/callee,AGI(${HOTLINE_AGI}/key?key=${HOTLINE_AGI_KEY},threeway110)",
    ]
    features = files["features.conf"].split("[applicationmap]\n", 1)[1]
    assert features.strip().splitlines() == applicationmap_lines(keys)
    menu = files["confbridge.conf"].split("[hotline_agent_keys]\ntype = menu\n", 1)[1]
    assert menu.strip().splitlines() == agent_menu_lines(keys)
    assert agent_menu_lines(keys) == [
        "*0 = dialplan_exec(hotline-keys,leave,1)",
        "*9 = dialplan_exec(hotline-keys,cancel,1)",
        "*3 = dialplan_exec(hotline-keys,add120,1)",
    ]
    assert f"DYNAMIC_FEATURES = {dynamic_features(keys)}\n" in files["hotline-globals.conf"]
    text = asterisk_config(keys)
    assert "DYNAMIC_FEATURES = carry110#threeway110" in text
    assert "[hotline_agent_keys]" in text
    # The dialplan the keys run in ships with the product.
    assert "[hotline-keys]" in files["hotline.conf"]


# -- what a press does ---------------------------------------------------------------------------

CALL = LiveCall(
    call_id="c.1",
    citizen_number="13800138000",
    citizen_channel="PJSIP/carrier-1",
    agent_id="1001",
    agent_channel="PJSIP/agent1001-2",
    agent_uniqueid="a.2",
    bridge_id="b1",
    linkedid="c.1",
    since=1.0,
)


class Model:
    def __init__(self, calls: dict[str, LiveCall]) -> None:
        self.calls = calls

    def call_of_agent_channel(self, uniqueid: str) -> LiveCall | None:
        return self.calls.get(uniqueid)


class Calls:
    def __init__(self, calls: dict[str, LiveCall], ready: bool = True) -> None:
        self.model = Model(calls)
        self.ready = ready

    def ensure_ready(self) -> None:
        if not self.ready:
            from hotline_bridge.core.errors import Unavailable

            raise Unavailable("the PBX link is down")

    def call_of_agent_channel(self, uniqueid: str) -> LiveCall:
        call = self.model.call_of_agent_channel(uniqueid)
        if call is None:
            raise Conflict("not an agent's leg")
        return call

    def changed(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()  # no event ever comes here


class Item:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class Transfers:
    def __init__(self) -> None:
        self.pressed: list[tuple[str, str]] = []

    def carry_transfer(self, call: LiveCall, target: str, handoff: Any) -> Item:
        if self.pressed:
            raise Conflict("a handoff is in progress")
        self.pressed.append((call.call_id, target))
        return Item(handoff_id="h-1")


class Conferences:
    def __init__(self) -> None:
        self.left: list[str] = []

    def of_agent_channel(self, uniqueid: str) -> Item:
        if uniqueid != "a.9":
            raise Conflict("not the agent of a live three-way call")
        return Item(id="c-1", agent_id="1001", handoff_id="h-9")

    def leave(self, conference_id: str, agent_id: str) -> Item:
        self.left.append(conference_id)
        return Item(id=conference_id, handoff_id="h-9")


class Recorder:
    def __init__(self) -> None:
        self.notes: list[tuple[str, str, str]] = []

    def note(self, handoff_id: str, what: str, detail: str, now: float) -> None:
        self.notes.append((handoff_id, what, detail))


def service(
    calls: Calls | None = None, limiter: RateLimiter | None = None
) -> tuple[PhoneKeyService, Transfers, Conferences, Recorder]:
    keys = [PhoneKeySettings(**k) for k in KEYS]
    t, c, r = Transfers(), Conferences(), Recorder()
    svc = PhoneKeyService(
        keys,
        calls or Calls({"a.2": CALL}),  # type: ignore[arg-type]
        t,  # type: ignore[arg-type]
        c,  # type: ignore[arg-type]
        r,
        clock=lambda: 5.0,
        limiter=limiter,
        monotonic=lambda: 100.0,
    )
    return svc, t, c, r


def press(svc: PhoneKeyService, name: str, uid: str) -> Any:
    return asyncio.run(svc.press(name, uid))


def test_a_key_acts_on_the_call_whose_agent_leg_dialled_it_and_notes_it_in_the_record() -> None:
    svc, transfers, _, recorder = service()
    outcome = press(svc, "carry110", "a.2")
    assert outcome.accepted and outcome.handoff_id == "h-1"
    assert transfers.pressed == [("c.1", "110")]
    assert recorder.notes == [("h-1", "phone_key", "carry110 (*1) on the agent's phone")]


def test_refusals_are_outcomes_with_a_reason_never_exceptions() -> None:
    svc, transfers, conferences, _ = service()
    assert press(svc, "nosuch", "a.2").reason == "unknown_key"
    assert press(svc, "carry110", "x.7").reason == "conflict"  # no call on that channel
    assert press(svc, "carry110", "a.2").accepted
    second = press(svc, "carry110", "a.2")  # one handoff at a time
    assert (second.accepted, second.reason) == (False, "conflict")
    assert transfers.pressed == [("c.1", "110")]
    assert press(svc, "leave", "a.2").reason == "conflict"  # not in a three-way room
    assert conferences.left == []
    down, _, _, _ = service(Calls({"a.2": CALL}, ready=False))
    assert press(down, "carry110", "a.2").reason == "unavailable"


def test_a_phone_pressing_keys_in_a_loop_takes_from_the_agents_api_bucket() -> None:
    limiter = RateLimiter(rate_per_s=0.1, burst=2)
    assert limiter.take("1001", 100.0) is None  # one hotkey through the API
    svc, _, conferences, _ = service(limiter=limiter)
    assert press(svc, "leave", "a.9").accepted  # the bucket's last token
    refused = press(svc, "leave", "a.9")
    assert (refused.accepted, refused.reason) == (False, "rate_limited")
    assert conferences.left == ["c-1"]


def test_held_keys_beep_and_do_nothing_until_released() -> None:
    # A hand-back of the PBX holds the keys: a transfer started then would be cut by it.
    svc, transfers, conferences, recorder = service()
    svc.held = "this PBX is being handed to another replica; press again"
    for name, uid in (("carry110", "a.2"), ("leave", "a.9")):
        refused = press(svc, name, uid)
        assert (refused.accepted, refused.reason) == (False, "unavailable")
        assert refused.detail == svc.held
    assert (transfers.pressed, conferences.left, recorder.notes) == ([], [], [])
    svc.held = None
    assert press(svc, "carry110", "a.2").accepted
    assert transfers.pressed == [("c.1", "110")]


def test_a_room_key_acts_on_the_room_the_agent_is_in() -> None:
    svc, _, conferences, _ = service()
    outcome = press(svc, "leave", "a.9")
    assert outcome.accepted and conferences.left == ["c-1"]


# -- the captures SIPp phones dial keys with -----------------------------------------------------


def _rtp(pcap: bytes) -> list[tuple[int, int, int]]:
    """(sequence number, timestamp, event) of each RTP packet in a capture."""
    out, off = [], 24
    while off < len(pcap):
        incl = struct.unpack("<I", pcap[off + 8 : off + 12])[0]
        rtp = pcap[off + 16 + 42 : off + 16 + incl]
        seq, ts = struct.unpack(">HI", rtp[2:8])
        out.append((seq, ts, rtp[12]))
        off += 16 + incl
    return out


@pytest.mark.skipif(not DTMF_DIR.exists(), reason="sip-tester's captures are not installed")
def test_joined_presses_rise_across_digits_and_files() -> None:
    first, second = presses(["*1", "*0"])
    packets = _rtp(first) + _rtp(second)
    assert [e for _, _, e in packets][::10] == [10, 1, 10, 0]  # *, 1, *, 0
    seqs = [s for s, _, _ in packets]
    assert all(b >= a for a, b in itertools.pairwise(seqs))  # end packets repeat
    events = sorted({(ts, e) for _, ts, e in packets})
    assert [ts for ts, _ in events] == sorted({ts for ts, _ in events})
    assert len({ts for _, ts, _ in packets}) == 4  # one timestamp per digit event
