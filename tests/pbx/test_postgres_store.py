"""The bridge on PostgreSQL end to end: ``hotline-bridge serve`` with ``[store] dsn`` (from the
environment, as a secret would come) does a real carry transfer on the sandbox PBX; the record,
its events and its outbox row are in PostgreSQL, and no SQLite file is written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from lab.bridge import start_bridge
from lab.faults.partner import bridge_env
from lab.sandbox import Sandbox
from lab.sipp import SippProcess

from hotline_bridge.handoffs.model import EventKind
from hotline_bridge.handoffs.store.postgres import PostgresHandoffStore

from .conftest import Parties

NO_PARTNER_PORT = 18397  # a partner link to a closed port: pushes wait in the outbox

pytestmark = pytest.mark.pbx

PG_BRIDGE_PORT = 18371


async def test_a_carry_transfer_with_the_bridge_on_postgres(
    sandbox: Sandbox, parties: Parties, pg_dsn: str, tmp_path: Path
) -> None:
    number = "13800138000"
    workdir = tmp_path / "pg-bridge"
    bridge = await asyncio.to_thread(
        start_bridge,
        sandbox.topology_path,
        sandbox.topology,
        workdir,
        port=PG_BRIDGE_PORT,
        overrides={
            "HOTLINE_BRIDGE_STORE__DSN": pg_dsn,
            # A partner link to 110 makes it a linked platform (its record is queued for the
            # push); nothing listens there, so the row stays in the outbox to be looked at.
            **bridge_env(NO_PARTNER_PORT),
            "HOTLINE_BRIDGE_AGI__ENABLED": "false",  # the session bridge has the AGI port
        },
    )
    try:
        await parties.agents()
        partner: SippProcess = await parties.partner(citizen=number)
        await parties.citizen(number)
        agent_id, _ = await bridge.wait_for_call()
        token = bridge.token(agent_id)
        status, body = await bridge.request(
            "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token
        )
        assert status == 202, body
        handoff_id = body["handoff_id"]
        await bridge.wait_state(f"/v1/transfers/{body['transfer_id']}", token, {"answered"})
        (invite,) = partner.snapshot().received("INVITE")
        assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
        assert invite.header("X-Handoff-Id") == handoff_id
        status, served = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
        assert status == 200, served
    finally:
        await asyncio.to_thread(bridge.stop)

    # What PostgreSQL holds, read by another connection after the bridge has stopped.
    store = PostgresHandoffStore(pg_dsn)
    try:
        record = store.get(handoff_id)
        assert record is not None and record.snapshot.citizen.number == number
        kinds = [e.kind for e in record.events]
        assert EventKind.TRANSFER_REQUESTED in kinds and EventKind.PARTNER_ANSWERED in kinds
        # What the API served during the call was read back from PostgreSQL.
        served_kinds = [e["kind"] for e in served["events"]]
        assert served_kinds == [k.value for k in kinds][: len(served_kinds)]
        pending = store.outbox_pending(now=datetime.now(UTC) + timedelta(days=1))
        assert ("handoff.created", handoff_id) in [(i.kind, i.handoff_id) for i in pending]
        kept = store.machines("carry_transfer", done=True) + store.machines(
            "carry_transfer", done=False
        )
        assert [m for m in kept if handoff_id in m[1]]  # the transfer's machine, kept there
    finally:
        store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as db:  # the guards are the database's
        with pytest.raises(psycopg.Error, match="append-only"):
            db.execute("DELETE FROM handoff_events")
    assert not (workdir / "handoffs.sqlite3").exists()
