"""Several PBXes over several replicas: which free PBX a replica claims, what a request is
about, the owners from the lease rows, one PBX's service settings, and when a taken-over PBX
is handed back to its preferred replica (pure; issue 14 §2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lab.cluster import load_cluster, replica_settings
from lab.sandbox import sandbox_module

from hotline_bridge.config.settings import ClusterNode, ConfigError, load_settings
from hotline_bridge.handoffs.store.lease import Lease
from hotline_bridge.runtime.placement import (
    Failback,
    Handback,
    Route,
    Sighting,
    claims,
    failback_policy,
    handback,
    home_node,
    machine_kind,
    node_settings,
    owners,
    presence_name,
    route,
    sightings,
)

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
GRACE = timedelta(seconds=1)
NODES = [
    ClusterNode(name="pbx-1", ami_port=18461, api_port=18471, prefer="a"),
    ClusterNode(name="pbx-2", ami_port=18462, api_port=18472, prefer="b"),
    ClusterNode(name="pbx-3", ami_port=18463, api_port=18473, prefer="c"),
]


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def lease(node: str, holder: str, expires: float, epoch: int = 1) -> Lease:
    return Lease(node, holder, at(expires), epoch, f"http://127.0.0.1:1848{holder}")


def test_at_start_each_replica_claims_its_preferred_pbx_at_once_and_the_others_later() -> None:
    free: dict[str, Lease | None] = {n.name: None for n in NODES}
    assert claims(NODES, "a", free, at(0), started_at=at(0), grace=GRACE) == ["pbx-1"]
    assert claims(NODES, "b", free, at(0), started_at=at(0), grace=GRACE) == ["pbx-2"]
    # A replica that owns nothing yet waits no grace for a PBX nobody prefers ... but each
    # PBX it plans to take makes the next one wait longer (the others get their turn).
    two = {"pbx-1": lease("pbx-1", "a", 3), "pbx-2": lease("pbx-2", "b", 3), "pbx-3": None}
    assert claims(NODES, "a", two, at(0.5), started_at=at(0), grace=GRACE) == []
    assert claims(NODES, "a", two, at(1.0), started_at=at(0), grace=GRACE) == ["pbx-3"]


def test_a_held_lease_is_never_claimed_not_even_by_its_preferred_replica() -> None:
    held = {"pbx-1": lease("pbx-1", "b", 5), "pbx-2": lease("pbx-2", "b", 5), "pbx-3": None}
    assert claims(NODES, "a", held, at(1), started_at=at(0), grace=GRACE) == ["pbx-3"]
    assert claims(NODES, "b", held, at(1), started_at=at(0), grace=GRACE) == []


def test_a_dead_owners_pbxes_go_to_the_survivors_least_loaded_first() -> None:
    # a died owning pbx-1 and pbx-3 (leases ran out at 10); b owns pbx-2, c owns nothing.
    rows = {
        "pbx-1": lease("pbx-1", "a", 10),
        "pbx-2": lease("pbx-2", "b", 20),
        "pbx-3": lease("pbx-3", "a", 10),
    }
    # c (preferred for pbx-3) takes it at once; it would take pbx-1 only after a grace.
    assert claims(NODES, "c", rows, at(10.1), started_at=at(0), grace=GRACE) == ["pbx-3"]
    assert claims(NODES, "c", rows, at(11.1), started_at=at(0), grace=GRACE) == ["pbx-3", "pbx-1"]
    # b already owns one: it waits one grace for either.
    assert claims(NODES, "b", rows, at(10.5), started_at=at(0), grace=GRACE) == []
    assert claims(NODES, "b", rows, at(11.0), started_at=at(0), grace=GRACE) == ["pbx-1"]
    # A lease that ran out before this replica started counts from its start.
    assert claims(NODES, "b", rows, at(12), started_at=at(11.5), grace=GRACE) == []


def test_owners_are_the_running_leases() -> None:
    rows = {"pbx-1": lease("pbx-1", "a", 5), "pbx-2": lease("pbx-2", "b", 1), "pbx-3": None}
    assert set(owners(rows, at(2))) == {"pbx-1"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/agents/1001/carry-transfer", Route("agent", "1001")),
        ("/v1/agents/1001/three-way", Route("agent", "1001")),
        ("/v1/agents/1001/current-handoff", Route("agent", "1001")),
        ("/v1/calls/1733.12/carry-transfer", Route("call", "1733.12")),
        ("/v1/transfers/tr-9", Route("transfer", "tr-9")),
        ("/v1/conferences/cf-1", Route("conference", "cf-1")),
        ("/v1/conferences/cf-1/leave", Route("conference", "cf-1")),
        ("/v1/work-orders", Route("home")),
        ("/v1/agents/1001/events/ticket", Route("home")),
        ("/metrics", Route("home")),
    ],
)
def test_what_a_request_is_about(path: str, expected: Route) -> None:
    assert route(path) == expected


SANDBOX: dict[str, Any] = {
    "ami": {"username": "hb", "secret": "sandbox-secret"},
    "bridge": {"return_queue": "q", "mode": "sandbox"},
    "follow_up": {"dial": "PJSIP/{number}@carrier"},
    "units": {"scan_interval_s": 60},
}
CLUSTER: dict[str, Any] = {
    "replica": "a",
    "url": "http://127.0.0.1:18481",
    "nodes": [n.model_dump() for n in NODES],
}


def test_a_nodes_service_drives_its_own_pbx_on_its_loopback_port_and_only_home_scans() -> None:
    s = load_settings(**SANDBOX, cluster=CLUSTER)
    assert s.cluster is not None and home_node(s.cluster.nodes) == "pbx-1"
    one, two = (node_settings(s, n) for n in NODES[:2])
    assert (one.ami.port, one.http.port, one.cluster) == (18461, 18471, None)
    assert (two.ami.port, two.http.port, two.http.host) == (18462, 18472, "127.0.0.1")
    assert not one.agi.enabled and not two.agi.enabled  # no agi_port: no hooks
    assert one.units.scan_interval_s == 60 and one.follow_up.dial is not None
    assert two.units.scan_interval_s == 0 and two.follow_up.dial is None
    assert machine_kind("carry_transfer", "pbx-2") == "carry_transfer@pbx-2"


def test_cluster_settings_take_node_or_nodes_and_refuse_clashes() -> None:
    with pytest.raises(ConfigError, match="either node"):
        load_settings(**SANDBOX, cluster={**CLUSTER, "node": "pbx-1"})
    with pytest.raises(ConfigError, match="either node"):
        load_settings(**SANDBOX, cluster={**CLUSTER, "nodes": []})
    clash = [n.model_dump() for n in NODES]
    clash[1]["api_port"] = 18471
    with pytest.raises(ConfigError, match="duplicate api_port"):
        load_settings(**SANDBOX, cluster={**CLUSTER, "nodes": clash})
    off = [n.model_dump() for n in NODES]
    off[2]["ami_host"] = "10.0.0.7"
    with pytest.raises(ConfigError, match=r"loopback only: cluster.nodes\[pbx-3\].ami_host"):
        load_settings(**SANDBOX, cluster={**CLUSTER, "nodes": off})


def test_the_cluster_sandbox_gives_each_pbxs_hooks_to_its_owner_on_the_pbxs_own_port(
    tmp_path: Path,
) -> None:
    c = load_cluster()
    s = load_settings(**replica_settings(c, "a", "postgresql://hb@127.0.0.1:1/h", tmp_path))
    assert s.cluster is not None
    rendered = {n.name: sandbox_module().render_files(n.topology) for n in c.nodes}
    ports = set()
    for node in s.cluster.nodes:
        agi = node_settings(s, node).agi
        assert agi.enabled and agi.port == node.agi_port and agi.host == "127.0.0.1"
        ports.add(agi.port)
        # The PBX's dialplan calls exactly that port, with the replicas' key.
        globals_conf = rendered[node.name]["hotline-globals.conf"]
        assert f"HOTLINE_AGI = agi://127.0.0.1:{node.agi_port}\n" in globals_conf
        assert agi.key is not None
        assert f"HOTLINE_AGI_KEY = {agi.key.get_secret_value()}\n" in globals_conf
    assert len(ports) == 3


# -- failback ----------------------------------------------------------------------------------

POLICY = Failback(settle=timedelta(seconds=9), max_wait=timedelta(seconds=60))
PBX_1 = NODES[0]  # prefers a


def back(
    *,
    now: float,
    preferred_since: float | None = 0.0,
    owned_since: float = 0.0,
    in_flight: int | None = 0,
    due_since: float | None = None,
    me: str = "b",
    node: ClusterNode = PBX_1,
) -> Handback:
    return handback(
        node,
        me,
        owned_since=at(owned_since),
        preferred=None if preferred_since is None else Sighting(2, at(preferred_since)),
        in_flight=in_flight,
        due_since=None if due_since is None else at(due_since),
        now=at(now),
        policy=POLICY,
    )


def test_a_pbx_is_kept_while_its_preferred_replica_is_dead_or_it_is_its_own() -> None:
    assert back(now=100, preferred_since=None).act == "keep"
    assert back(now=100, me="a").act == "keep"  # the preferred replica itself
    nobody = ClusterNode(name="pbx-9", api_port=18479)  # no preferred replica at all
    assert back(now=100, node=nobody).act == "keep"


def test_a_preferred_replica_alive_for_less_than_settle_does_not_get_it_back_yet() -> None:
    hb = back(now=108.9, preferred_since=100)
    assert (hb.act, hb.due_since) == ("keep", None)
    assert back(now=109, preferred_since=100).act == "release"


def test_a_fresh_takeover_is_held_down_however_long_the_preferred_one_was_alive() -> None:
    # b took pbx-1 over at 100 (say a was stuck, its presence still renewed): not before 109.
    assert back(now=105, preferred_since=0, owned_since=100).act == "keep"
    assert back(now=109, preferred_since=0, owned_since=100).act == "release"


def test_nothing_is_released_while_something_is_in_flight_and_the_wait_starts_then() -> None:
    hb = back(now=20, in_flight=2)
    assert (hb.act, hb.due_since, hb.why) == ("wait", at(20), "2 in flight on it")
    # Still busy later: the wait counts from when it first became due.
    assert back(now=50, in_flight=1, due_since=20) == Handback("wait", "1 in flight on it", at(20))
    # A service not up yet is not known to be quiet.
    assert back(now=50, in_flight=None, due_since=20).act == "wait"
    # Quiet within the wait: handed back.
    assert back(now=70, in_flight=0, due_since=20) == Handback(
        "release", "its preferred replica is back and the PBX is quiet", at(20)
    )


def test_a_pbx_never_quiet_within_max_wait_stays_put_even_once_quiet() -> None:
    assert back(now=80, in_flight=1, due_since=20).act == "stay"
    assert back(now=500, in_flight=0, due_since=20).act == "stay"
    # The preferred replica restarts (a new sighting, so not settled): the wait is over.
    hb = back(now=505, in_flight=0, due_since=20, preferred_since=500)
    assert (hb.act, hb.due_since) == ("keep", None)
    assert back(now=510, in_flight=0, due_since=hb.due_since, preferred_since=500).act == "release"


def test_max_wait_zero_releases_only_a_pbx_quiet_at_once() -> None:
    zero = Failback(settle=timedelta(seconds=9), max_wait=timedelta(0))
    quiet = handback(PBX_1, "b", owned_since=at(0), preferred=Sighting(1, at(0)), in_flight=0,
                     due_since=None, now=at(10), policy=zero)  # fmt: skip
    busy = handback(PBX_1, "b", owned_since=at(0), preferred=Sighting(1, at(0)), in_flight=1,
                    due_since=None, now=at(10), policy=zero)  # fmt: skip
    assert (quiet.act, busy.act) == ("release", "stay")


def test_a_replica_is_alive_since_its_presence_epoch_was_first_seen() -> None:
    def presence(epoch: int, expires: float) -> Lease:
        return Lease(presence_name("a"), "a", at(expires), epoch)

    seen = sightings({}, {"a": presence(1, 3), "c": None}, at(1))
    assert seen == {"a": Sighting(1, at(1))}
    seen = sightings(seen, {"a": presence(1, 6), "c": None}, at(4))
    assert seen == {"a": Sighting(1, at(1))}  # renewed: alive since 1
    assert sightings(seen, {"a": presence(1, 6)}, at(7)) == {}  # lapsed: dead
    # Restarted (a new epoch), even before the old presence lapsed: alive since now.
    assert sightings(seen, {"a": presence(2, 8)}, at(5)) == {"a": Sighting(2, at(5))}
    assert presence_name("a") not in {n.name for n in NODES}


def test_a_handed_back_pbx_is_left_to_its_live_preferred_replica_for_a_while() -> None:
    # b released pbx-1 at 10 (a is alive); b owns pbx-2, c owns pbx-3.
    rows = {
        "pbx-1": lease("pbx-1", "b", 10),
        "pbx-2": lease("pbx-2", "b", 20),
        "pbx-3": lease("pbx-3", "c", 20),
    }
    kw: dict[str, Any] = {"started_at": at(0), "grace": GRACE, "defer": timedelta(seconds=3)}
    assert claims(NODES, "a", rows, at(10.1), present={"a"}, **kw) == ["pbx-1"]
    assert claims(NODES, "c", rows, at(11.5), present={"a"}, **kw) == []
    assert claims(NODES, "b", rows, at(13.9), present={"a"}, **kw) == []
    # a never claimed it (stuck): the others are not kept waiting longer than that.
    assert claims(NODES, "c", rows, at(14.0), present={"a"}, **kw) == ["pbx-1"]
    # a dead (not present): the ordinary grace only.
    assert claims(NODES, "c", rows, at(11.0), present=set(), **kw) == ["pbx-1"]


def test_failback_bounds_come_from_the_lease_period() -> None:
    s = load_settings(**SANDBOX, cluster={**CLUSTER, "lease_ttl_s": 1.5})
    assert s.cluster is not None
    assert failback_policy(s.cluster) == Failback(timedelta(seconds=4.5), timedelta(seconds=600))
    off = load_settings(**SANDBOX, cluster={**CLUSTER, "failback": False})
    assert off.cluster is not None and failback_policy(off.cluster) is None
