"""The PBX lease: who is active, what a claim grants, where a standby forwards. Pure."""

from __future__ import annotations

from hotline_bridge.runtime.lease import Lease, grant, owner_url, role_of

A, B = "a", "b"
URL_A, URL_B = "http://127.0.0.1:1", "http://127.0.0.1:2"


def test_the_first_claim_takes_a_free_lease_and_renewals_keep_the_epoch() -> None:
    first = grant(None, "pbx-1", A, URL_A, 3.0, now=100.0)
    assert first == Lease("pbx-1", A, URL_A, 103.0, 1)
    renewed = grant(first, "pbx-1", A, URL_A, 3.0, now=101.0)
    assert renewed.expires_at == 104.0 and renewed.epoch == 1
    assert role_of(renewed, A, 103.9) == "active" and role_of(renewed, B, 103.9) == "standby"


def test_another_replica_gets_it_only_once_it_lapsed() -> None:
    held = Lease("pbx-1", A, URL_A, 103.0, 1)
    assert grant(held, "pbx-1", B, URL_B, 3.0, now=102.9) is held
    assert owner_url(held, 102.9) == URL_A  # the standby forwards to A meanwhile
    taken = grant(held, "pbx-1", B, URL_B, 3.0, now=103.0)
    assert taken == Lease("pbx-1", B, URL_B, 106.0, 2)  # a new holder: a new epoch
    assert role_of(taken, A, 103.5) == "standby"  # A, back from a pause, is no longer active


def test_a_lapsed_lease_has_no_owner_and_makes_nobody_active() -> None:
    held = Lease("pbx-1", A, URL_A, 103.0, 4)
    assert owner_url(held, 103.0) is None and owner_url(None, 0.0) is None
    assert role_of(held, A, 103.0) == "standby"
