"""The AMI-ownership lease on a real PostgreSQL server: two replicas contend for one PBX, one
holds it; when the holder stops renewing, the other takes over after expiry with a new epoch."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from hotline_bridge.handoffs.store.lease import PostgresLeases

LONG = timedelta(seconds=60)


def test_two_contenders_one_holder_and_a_takeover_after_expiry(pg_dsn: str) -> None:
    a, b = PostgresLeases(pg_dsn), PostgresLeases(pg_dsn)
    try:
        # Both ask at once, many times: exactly one holds the lease, always the same one.
        results: dict[str, list[bool]] = {"a": [], "b": []}
        go = threading.Barrier(2)

        def contend(name: str, leases: PostgresLeases) -> None:
            go.wait()
            for _ in range(30):
                results[name].append(leases.acquire("pbx-1", name, LONG).granted)

        threads = [threading.Thread(target=contend, args=(n, s)) for n, s in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        winners = [n for n, r in results.items() if any(r)]
        assert len(winners) == 1, results
        winner, loser = winners[0], ("b" if winners[0] == "a" else "a")
        assert all(results[winner]) and not any(results[loser])
        held, other = (a, b) if winner == "a" else (b, a)

        # The holder renews with a short lease, then stops (killed): the other takes over.
        short = held.acquire("pbx-1", winner, timedelta(milliseconds=300))
        assert short.granted and short.lease.epoch == 1
        for _ in range(100):  # bounded polling, no timed assertion
            taken = other.acquire("pbx-1", loser, LONG)
            if taken.granted:
                break
            time.sleep(0.05)
        assert taken.granted and taken.changed_hands and taken.lease.epoch == 2
        late = held.acquire("pbx-1", winner, LONG)  # the old owner comes back: refused
        assert not late.granted and late.lease.holder == loser

        # A clean hand-over: the holder releases, the other takes it at once.
        other.release("pbx-1", loser)
        back = held.acquire("pbx-1", winner, LONG)
        assert back.granted and back.lease.epoch == 3
    finally:
        a.close()
        b.close()


def test_replicas_starting_together_on_a_fresh_database_all_open_their_leases(
    pg_dsn: str,
) -> None:
    # The cluster drill's 3 replicas once died at start: CREATE TABLE IF NOT EXISTS run at once
    # by several sessions collides in PostgreSQL's catalog (a unique violation on pg_type).
    opened: list[PostgresLeases] = []
    errors: list[BaseException] = []
    go = threading.Barrier(6)

    def start() -> None:
        go.wait()
        try:
            opened.append(PostgresLeases(pg_dsn))
        except BaseException as exc:  # reported below, with the others'
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(opened) == 6, errors
        assert (
            sum(lease.acquire("pbx-1", str(i), LONG).granted for i, lease in enumerate(opened)) == 1
        )
    finally:
        for lease in opened:
            lease.close()
