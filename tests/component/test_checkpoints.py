"""The bridge's SQLite connection leaves WAL checkpoints (an fsync each) to a thread of their own:
left alone the WAL only grows; with the checkpointer it is checkpointed and started over."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hotline_bridge.handoffs.store.sqlite import Checkpointer, SqliteHandoffStore
from tests.component.test_store import make

N = 600


def wal_frames_after_writes(path: Path, checkpointer: bool) -> int:
    """Frames in the current WAL after N records (read with a checkpoint, which reports them)."""
    store = SqliteHandoffStore(path)
    store.leave_checkpoints()
    checkpoints = Checkpointer(path, every_s=0.01).start() if checkpointer else None
    try:
        last = ""
        for i in range(N):
            record = make(i)
            store.create(record)
            last = record.id
            if checkpoints is not None and i % 50 == 49:
                time.sleep(0.05)  # give the thread its turns, as the loop's idle moments do
    finally:
        if checkpoints is not None:
            checkpoints.stop()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        _busy, frames, _done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        db.close()
    assert store.get(last) is not None
    store.close()
    return int(frames)


def test_left_alone_the_wal_grows_and_the_checkpointer_starts_it_over(tmp_path: Path) -> None:
    alone = wal_frames_after_writes(tmp_path / "alone.sqlite3", checkpointer=False)
    kept = wal_frames_after_writes(tmp_path / "kept.sqlite3", checkpointer=True)
    assert alone > 1000  # past SQLite's own auto-checkpoint: the connection left it
    # Checkpointed and restarted many times: only the last stretch of writes is in the WAL.
    assert kept < alone / 4, (kept, alone)
