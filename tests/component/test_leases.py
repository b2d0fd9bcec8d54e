"""The leases table on a real SQLite file shared by two connections (two replicas' processes
see one order of claims)."""

from __future__ import annotations

from pathlib import Path

from hotline_bridge.runtime.leases import SqliteLeases


def test_two_replicas_on_one_store_file_never_both_hold_the_lease(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    a, b = SqliteLeases(path), SqliteLeases(path)
    try:
        assert a.claim("pbx-1", "a", "http://a", 3.0, now=100.0).holder == "a"
        assert b.claim("pbx-1", "b", "http://b", 3.0, now=101.0).holder == "a"
        assert a.claim("pbx-1", "a", "http://a", 3.0, now=102.0).expires_at == 105.0
        # a dies; its lease lapses; b takes it, and a's next claim sees b.
        taken = b.claim("pbx-1", "b", "http://b", 3.0, now=105.0)
        assert (taken.holder, taken.epoch) == ("b", 2)
        assert a.claim("pbx-1", "a", "http://a", 3.0, now=105.5).holder == "b"
        # A clean stop gives it up at once.
        b.release("pbx-1", "b")
        assert a.claim("pbx-1", "a", "http://a", 3.0, now=105.6).holder == "a"
        assert a.get("pbx-2") is None
    finally:
        a.close()
        b.close()
