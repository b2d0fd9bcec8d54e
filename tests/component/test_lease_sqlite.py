"""The PBX lease on the SQLite store's file, shared by two connections as two replicas' processes
on one host share it: one holder at a time, takeover after expiry with a new epoch, the holder's
URL for the standbys, a clean release."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hotline_bridge.config.settings import load_settings
from hotline_bridge.handoffs.store.lease import SqliteLeases, owner_url
from hotline_bridge.runtime.placement import presence_name
from hotline_bridge.runtime.replica import LeaseKeeper

LONG = timedelta(seconds=60)


def test_two_replicas_on_one_file_one_holder_takeover_and_release(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    a, b = SqliteLeases(path), SqliteLeases(path)
    try:
        first = a.acquire("pbx-1", "a", LONG, "http://a")
        assert first.granted and first.lease.epoch == 1
        refused = b.acquire("pbx-1", "b", LONG, "http://b")
        assert not refused.granted and refused.lease.holder == "a"
        assert owner_url(refused.lease, datetime.now(UTC)) == "http://a"  # b forwards to a
        assert (path.stat().st_mode & 0o777) == 0o600  # the store's file: the owner's only

        short = a.acquire("pbx-1", "a", timedelta(milliseconds=200), "http://a")
        assert short.granted and not short.changed_hands
        for _ in range(100):  # a stops renewing (killed): bounded polling, no timed assertion
            taken = b.acquire("pbx-1", "b", LONG, "http://b")
            if taken.granted:
                break
            time.sleep(0.02)
        assert taken.granted and taken.changed_hands and taken.lease.epoch == 2
        late = a.acquire("pbx-1", "a", LONG, "http://a")
        assert not late.granted and late.lease.url == "http://b"

        b.release("pbx-1", "b")  # a clean stop hands over at once
        back = a.acquire("pbx-1", "a", LONG, "http://a")
        assert back.granted and back.lease.epoch == 3
        assert owner_url(None, datetime.now(UTC)) is None
    finally:
        a.close()
        b.close()


def test_a_dropped_lease_is_released_without_the_keeper_taking_it_back(tmp_path: Path) -> None:
    """A hand-back: the keeper stops renewing the PBX, the lease is released, and the keeper
    neither takes it again nor exits (it would, finding its own term lapsed); the presence
    lease is renewed all along and released at a clean stop."""
    s = load_settings(
        ami={"username": "hb", "secret": "x"},
        bridge={"return_queue": "q", "mode": "sandbox", "store_path": str(tmp_path / "s.db")},
        cluster={
            "replica": "b",
            "url": "http://127.0.0.1:18481",
            "lease_ttl_s": 0.6,
            "nodes": [{"name": "pbx-1", "api_port": 18480, "prefer": "a"}],
        },
    )
    assert s.cluster is not None
    ttl = timedelta(seconds=0.6)
    mine = SqliteLeases(tmp_path / "s.db")
    try:
        assert mine.acquire("pbx-1", "b", ttl, "http://b").granted
        assert mine.acquire(presence_name("b"), "b", ttl, "http://b").granted
        keeper = LeaseKeeper(s, s.cluster)
        keeper.add("pbx-1")
        keeper.present_as(presence_name("b"))
        keeper.start()
        time.sleep(1.0)  # past the first leases' expiry: renewed
        now = datetime.now(UTC)
        kept = mine.get("pbx-1")
        assert kept is not None and kept.expires_at > now and kept.epoch == 1
        keeper.drop("pbx-1")
        mine.release("pbx-1", "b")
        time.sleep(1.0)  # several renewal rounds
        after = mine.get("pbx-1")
        assert after is not None and after.expires_at <= now + timedelta(seconds=0.1)
        present = mine.get(presence_name("b"))
        assert present is not None and present.expires_at > datetime.now(UTC)
        assert present.epoch == 1  # renewed, never lapsed
        keeper.stop()
        gone = mine.get(presence_name("b"))
        assert gone is not None and gone.expires_at <= datetime.now(UTC)
    finally:
        mine.close()
