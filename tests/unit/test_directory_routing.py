"""The directory wired in: which desk a hand-over dials, what the record keeps of the choice,
and that only a record for a linked platform is queued for the partner link."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lab.sandbox import DEFAULT_TOPOLOGY, bridge_settings, load_topology, sandbox_module

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.config.settings import load_settings
from hotline_bridge.core.errors import Conflict, Forbidden, Invalid
from hotline_bridge.core.principal import Principal
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.directory.configured import (
    DirectoryError,
    configured_directory,
    endpoints,
)
from hotline_bridge.directory.loader import load_directory, parse_directory
from hotline_bridge.directory.model import Purpose, TargetKind
from hotline_bridge.handoffs.book import route
from hotline_bridge.handoffs.intake import HandoffInput
from hotline_bridge.handoffs.model import EventKind
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.service import EventInput
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.handoffs.store.base import CallEntry

T = 1_714_550_400.0  # 2024-05-01T08:00:00Z = 16:00 in Lijiang
SEED = load_directory()
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


def sandbox(**changes: Any) -> dict[str, Any]:
    topo = load_topology(DEFAULT_TOPOLOGY)
    for section, values in changes.items():
        topo[section] = {**topo.get(section, {}), **values}
    return dict(sandbox_module().bridge_config(topo))


# -- route: the desk ----------------------------------------------------------------------------


def test_the_call_s_jurisdiction_picks_the_desk() -> None:
    yulong = route(SEED, "119", "yulong", HandoffInput(), Purpose.TRANSFER, T)
    gucheng = route(SEED, "119", "gucheng", HandoffInput(), Purpose.TRANSFER, T)
    assert (yulong.dial, yulong.routed_as, yulong.overridden) == (
        "PJSIP/1192@desk-119",
        "yulong",
        False,
    )
    assert (gucheng.dial, gucheng.number) == ("PJSIP/1191@desk-119", "1191")
    # No desk of its own: the city-wide one (110 has a Yulong desk only).
    assert route(SEED, "110", "huaping", HandoffInput(), Purpose.TRANSFER, T).routed_as == "city"
    assert route(SEED, "110", "unknown", HandoffInput(), Purpose.TRANSFER, T).dial == (
        "PJSIP/110@partner-110"
    )


def test_the_form_s_jurisdiction_overrides_the_call_s() -> None:
    form = HandoffInput(jurisdiction=Jurisdiction.YULONG)
    desk = route(SEED, "120", "gucheng", form, Purpose.THREE_WAY, T)
    assert (desk.dial, desk.jurisdiction, desk.overridden) == (
        "PJSIP/1202@desk-120",
        "gucheng",
        True,
    )
    same = route(SEED, "120", "yulong", form, Purpose.THREE_WAY, T)
    assert not same.overridden  # the form agrees with the entry hook


def test_refusals_are_4xx_with_the_reason() -> None:
    with pytest.raises(Invalid, match=r"unknown target '999'.*known targets: 110, 119"):
        route(SEED, "999", "gucheng", HandoffInput(), Purpose.TRANSFER, T)
    with pytest.raises(Invalid, match="takes no three-way calls"):
        route(SEED, "water", "gucheng", HandoffInput(), Purpose.THREE_WAY, T)
    night = parse_directory(
        SEED_TEXT.replace(
            'kind = "line"\nhours = ["00:00-24:00"]', 'kind = "line"\nhours = ["08:00-12:00"]'
        ),
        Path("night.toml"),
    )
    with pytest.raises(Conflict, match="outside its hours"):
        route(night, "gas", "gucheng", HandoffInput(), Purpose.TRANSFER, T)  # 16:00 local


SEED_TEXT = (
    Path(__file__).resolve().parents[2] / "src/hotline_bridge/directory/targets.toml"
).read_text(encoding="utf-8")


# -- configured_directory: the site's directory ---------------------------------------------------


def test_the_targets_tables_are_a_directory_of_city_wide_desks() -> None:
    config = sandbox(bridge={"targets_path": None})
    # Without the directory only [targets] (110) exist: keys for other targets would be refused.
    config["phone_keys"] = [k for k in config["phone_keys"] if k.get("target") in (None, "110")]
    settings = load_settings(**config)
    assert settings.bridge.targets_path is None
    got = configured_directory(settings)
    d110 = got.directory.targets["110"]
    assert d110.kind is TargetKind.LINE and got.downgraded == ()  # no [partner]: by reference
    assert d110.desk_for("yulong") == ("city", d110.desks["city"])
    assert "partner-110" in endpoints(got.directory)


def test_the_sandbox_routes_by_the_seed_and_carries_its_unlinked_110_by_reference() -> None:
    settings = bridge_settings(DEFAULT_TOPOLOGY)
    assert settings.bridge.targets_path is not None and not settings.targets
    got = configured_directory(settings)
    assert got.downgraded == ("110",)
    assert not got.directory.targets["110"].linked
    assert {"partner-110", "desk-110-yulong", "desk-119", "desk-gas"} <= set(
        endpoints(got.directory)
    )


def test_production_refuses_a_linked_platform_without_a_partner_link() -> None:
    settings = bridge_settings(DEFAULT_TOPOLOGY).model_copy(deep=True)
    object.__setattr__(settings.bridge, "mode", "production")
    with pytest.raises(DirectoryError, match=r"targets\.110: a linked platform .* no \[partner\]"):
        configured_directory(settings)


def test_a_partner_link_to_its_site_makes_the_target_linked() -> None:
    settings = bridge_settings(
        DEFAULT_TOPOLOGY,
        partner={
            "site": "110",
            "base_url": "http://127.0.0.1:18110",
            "key_id": "k12345",
            "secret": "sandbox-partner-secret-0123456789abcdef",
        },
    )
    got = configured_directory(settings)
    assert got.downgraded == () and got.directory.targets["110"].linked
    assert not got.directory.targets["119"].linked


def test_settings_refuse_both_a_directory_file_and_targets_tables() -> None:
    with pytest.raises(Exception, match=r"either \[targets\] tables or \[bridge\]\.targets_path"):
        load_settings(
            **sandbox(),
            targets={
                "110": {
                    "label": "110",
                    "number": "110",
                    "dial": "PJSIP/110@partner-110",
                    "forwarding_number": "12345",
                }
            },
        )


# -- the record: what it keeps, and whether it is pushed ---------------------------------------


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[StoreRecorder]:
    store = SqliteHandoffStore(tmp_path / "h.sqlite3")
    yield StoreRecorder(
        store, load_catalog(), site=Platform.HOTLINE_12345, public_url="http://127.0.0.1:8345/"
    )
    store.close()


def test_the_recorder_reads_the_entry_hook_s_jurisdiction(recorder: StoreRecorder) -> None:
    assert recorder.jurisdiction(CALL.call_id) == "unknown"  # no row: not through the hook
    recorder.store.open_call(
        CallEntry(
            call_id=CALL.call_id,
            arrived_at=datetime.fromtimestamp(T - 40, UTC),
            kind="citizen",
            jurisdiction=Jurisdiction.YULONG,
        )
    )
    assert recorder.jurisdiction(CALL.call_id) == "yulong"


def test_a_plain_line_s_record_is_complete_without_a_push(recorder: StoreRecorder) -> None:
    desk = route(SEED, "119", "yulong", HandoffInput(), Purpose.TRANSFER, T)
    hid = recorder.open(
        kind="carry_transfer", call=CALL, target="119", handoff=HandoffInput(), now=T, desk=desk
    )
    record = recorder.store.get(hid)
    assert record is not None
    assert record.snapshot.matter.jurisdiction is Jurisdiction.YULONG  # the entry hook's
    assert dict(record.events[0].data) == {
        "desk": "yulong",
        "desk_number": "1192",
        "call_jurisdiction": "yulong",
        "jurisdiction_override": "no",
    }
    assert recorder.store.outbox_pending(now=datetime.fromtimestamp(T + 1, UTC)) == []

    # An agent's later handling event on it stays home too.
    service = recorder.service("110")
    service.by_reference = frozenset({"119"})
    service.append(
        Principal(id="1001", role="agent", agent_id="1001"),
        hid,
        EventInput(kind="note", text="caller called back"),
    )
    assert recorder.store.outbox_pending(now=datetime.now(UTC)) == []


def test_a_linked_platform_s_record_is_queued_and_an_override_recorded(
    recorder: StoreRecorder,
) -> None:
    linked = parse_directory(SEED_TEXT, Path("seed.toml"))  # 110 linked (site 110) as shipped
    form = HandoffInput(jurisdiction=Jurisdiction.YULONG)
    desk = route(linked, "110", "gucheng", form, Purpose.TRANSFER, T)
    assert desk.pushes_record and desk.dial == "PJSIP/1102@desk-110-yulong"
    hid = recorder.open(
        kind="carry_transfer", call=CALL, target="110", handoff=form, now=T, desk=desk
    )
    record = recorder.store.get(hid)
    assert record is not None
    assert record.snapshot.matter.jurisdiction is Jurisdiction.YULONG  # routed as the agent said
    assert record.events[0].kind is EventKind.CREATED
    assert record.events[0].data["jurisdiction_override"] == "yes"
    assert record.events[0].data["call_jurisdiction"] == "gucheng"
    pending = recorder.store.outbox_pending(now=datetime.fromtimestamp(T + 1, UTC))
    assert [(p.handoff_id, p.kind) for p in pending] == [(hid, "handoff.created")]


def test_a_plain_line_s_client_reads_only_the_records_handed_to_its_line(
    recorder: StoreRecorder,
) -> None:
    configured = configured_directory(bridge_settings(DEFAULT_TOPOLOGY))
    assert configured.line_readers == {
        "water-co": frozenset({"water"}),
        "power-co": frozenset({"power"}),
    }
    service = recorder.service("110")
    service.line_readers = configured.line_readers
    water_co = Principal(id="water-co", role="line")
    ids = {}
    for target in ("water", "119"):
        desk = route(SEED, target, "yulong", HandoffInput(), Purpose.TRANSFER, T)
        ids[target] = recorder.open(
            kind="carry_transfer",
            call=CALL,
            target=target,
            handoff=HandoffInput(),
            now=T,
            desk=desk,
        )
    view = service.read(water_co, ids["water"])
    assert view["snapshot"]["target"] == "water"
    assert view["snapshot"]["citizen"]["number"] == "138****8000"  # masked: not its creator
    with pytest.raises(Forbidden, match="not handed to your line"):
        service.read(water_co, ids["119"])


def test_a_line_s_api_client_must_not_be_a_token_of_another_role() -> None:
    settings = bridge_settings(
        DEFAULT_TOPOLOGY,
        api_clients=[
            {"id": "power-co", "role": "supervisor", "token": "sandbox-token-power-sup-1"}
        ],
    )
    with pytest.raises(
        DirectoryError, match=r"targets\.power: api_client power-co is a supervisor"
    ):
        configured_directory(settings)
