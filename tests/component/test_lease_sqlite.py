"""The PBX lease on the SQLite store's file, shared by two connections as two replicas' processes
on one host share it: one holder at a time, takeover after expiry with a new epoch, the holder's
URL for the standbys, a clean release."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hotline_bridge.handoffs.store.lease import SqliteLeases, owner_url

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
