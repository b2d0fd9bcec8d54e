"""The lease decision (pure): who holds a PBX's AMI link, renewal, expiry, takeover, epochs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hotline_bridge.handoffs.store.lease import Lease, decide, release

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
TTL = timedelta(seconds=10)


def ask(current: Lease | None, asker: str, at: float) -> tuple[Lease, bool, bool]:
    d = decide(current, resource="pbx-1", asker=asker, now=T0 + timedelta(seconds=at), ttl=TTL)
    return d.lease, d.granted, d.changed_hands


def test_the_first_asker_takes_it_and_renews_it_and_others_are_refused() -> None:
    lease, granted, changed = ask(None, "a", 0)
    assert granted and changed and lease.holder == "a" and lease.epoch == 1
    renewed, granted, changed = ask(lease, "a", 5)
    assert granted and not changed and renewed.epoch == 1
    assert renewed.expires_at == T0 + timedelta(seconds=15)
    same, granted, _ = ask(renewed, "b", 14)
    assert not granted and same == renewed  # refused, the lease untouched


def test_an_expired_lease_goes_to_the_next_asker_with_a_new_epoch() -> None:
    lease, _, _ = ask(None, "a", 0)
    taken, granted, changed = ask(lease, "b", 10)  # expires_at is exclusive
    assert granted and changed and taken.holder == "b" and taken.epoch == 2
    back, granted, _ = ask(taken, "a", 11)  # the former owner's late renewal is refused
    assert not granted and back == taken


def test_a_holder_that_let_it_lapse_starts_a_new_epoch() -> None:
    lease, _, _ = ask(None, "a", 0)
    again, granted, _ = ask(lease, "a", 30)
    assert granted and again.epoch == 2  # its old term's late writes are fenced off


def test_release_hands_over_at_once_and_only_by_its_holder() -> None:
    lease, _, _ = ask(None, "a", 0)
    assert release(lease, asker="b", now=T0) == lease
    freed = release(lease, asker="a", now=T0 + timedelta(seconds=1))
    assert freed is not None
    taken, granted, _ = ask(freed, "b", 1)
    assert granted and taken.epoch == 2
    assert release(None, asker="a", now=T0) is None


def test_a_lease_lasts_a_positive_time() -> None:
    with pytest.raises(ValueError, match="positive"):
        decide(None, resource="pbx-1", asker="a", now=T0, ttl=timedelta(0))


def test_the_lease_names_its_holders_url_for_the_standbys_while_it_runs() -> None:
    from hotline_bridge.handoffs.store.lease import owner_url

    d = decide(None, resource="pbx-1", asker="a", now=T0, ttl=TTL, url="http://a:8345")
    assert d.lease.url == "http://a:8345"
    assert owner_url(d.lease, T0 + timedelta(seconds=9)) == "http://a:8345"
    assert owner_url(d.lease, T0 + TTL) is None  # lapsed: nobody to forward to (503)
    taken = decide(d.lease, resource="pbx-1", asker="b", now=T0 + TTL, ttl=TTL, url="http://b")
    assert taken.lease.url == "http://b"
