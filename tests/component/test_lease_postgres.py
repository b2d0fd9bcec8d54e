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
