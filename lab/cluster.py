"""The cluster sandbox (issue 14 §2): 3 PBXes, PostgreSQL and 3 bridge replicas on loopback.

``asterisk/cluster/cluster.toml`` names the PBXes (each a sandbox topology beside it) and the
replicas. Each replica's settings are generated here, as ``asterisk/sandbox.py bridge-config``
does for one PBX: the first PBX's bridge sections, every PBX's agents (an agent id names one
phone on one PBX), ``[cluster]`` with the nodes (each with its PBX's FastAGI port: the owner of
a PBX answers its dialplan's hooks), ``[store] dsn``, ``mode = "sandbox"``.

    python -m lab.cluster start     # PBXes, PostgreSQL, replicas; state in .sandbox/cluster/
    python -m lab.cluster stop
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bridge import RunningBridge, _spawn
from .sandbox import REPO, Sandbox, load_topology, sandbox_module

CLUSTER_DIR = REPO / "asterisk" / "cluster"
CLUSTER_TOML = CLUSTER_DIR / "cluster.toml"
STATE_DIR = REPO / ".sandbox" / "cluster"


@dataclass(frozen=True)
class Node:
    name: str
    topology_path: Path
    topology: dict[str, Any]
    api_port: int
    prefer: str | None


@dataclass(frozen=True)
class Cluster:
    nodes: list[Node]
    replicas: dict[str, int]  # name -> API port
    lease_ttl_s: float

    def url(self, replica: str) -> str:
        return f"http://127.0.0.1:{self.replicas[replica]}"

    def agents(self) -> list[dict[str, Any]]:
        """Every PBX's agents (the pools expanded), each with the node it sits on."""
        sb = sandbox_module()
        out = []
        for node in self.nodes:
            for a in [*node.topology["agents"], *sb.pool_agents(node.topology)]:
                out.append({**a, "node": node.name})
        return out


def load_cluster(path: Path = CLUSTER_TOML) -> Cluster:
    raw = tomllib.loads(path.read_text())
    nodes = []
    for n in raw["nodes"]:
        topo_path = path.parent / n["topology"]
        nodes.append(
            Node(
                n["name"], topo_path, load_topology(topo_path), int(n["api_port"]), n.get("prefer")
            )
        )
    replicas = {r["name"]: int(r["port"]) for r in raw["replicas"]}
    keys = {n.topology["agi"]["key"] for n in nodes}
    if len(keys) != 1:  # the replicas have one [agi]: every PBX's dialplan must pass its key
        raise ValueError(f"{path}: the PBXes' [agi].key differ; the replicas have one")
    return Cluster(nodes, replicas, float(raw.get("lease_ttl_s", 3.0)))


def replica_settings(cluster: Cluster, replica: str, dsn: str, workdir: Path) -> dict[str, Any]:
    """One replica's bridge settings (sandbox mode, loopback only)."""
    sb = sandbox_module()
    first = cluster.nodes[0]
    settings: dict[str, Any] = sb.bridge_config(first.topology)
    peer = {"sip_host", "sip_port", "send_pai", "node"}
    settings["agents"] = [{k: v for k, v in a.items() if k not in peer} for a in cluster.agents()]
    url = cluster.url(replica)
    settings["http"] = {"host": "127.0.0.1", "port": cluster.replicas[replica], "public_url": url}
    # One [agi] for every PBX (pbx-1's: key, jurisdictions); each node's own port is its agi_port,
    # listened on by the replica that owns the node while it owns it.
    settings["agi"] = {k: v for k, v in first.topology["agi"].items() if k != "port"}
    settings["bridge"] = {**settings["bridge"], "store_path": str(workdir / "unused.sqlite3")}
    settings["store"] = {"dsn": dsn}
    settings["cluster"] = {
        "replica": replica,
        "url": url,
        "lease_ttl_s": cluster.lease_ttl_s,
        "nodes": [
            {
                "name": n.name,
                "ami_host": n.topology["ami"]["host"],
                "ami_port": n.topology["ami"]["port"],
                "api_port": n.api_port,
                "agi_port": n.topology["agi"]["port"],
                **({"prefer": n.prefer} if n.prefer else {}),
            }
            for n in cluster.nodes
        ],
    }
    settings["log_format"] = "json"
    return settings


def write_replica_config(cluster: Cluster, replica: str, dsn: str, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "bridge.toml"
    out.write_text(sandbox_module().toml_dumps(replica_settings(cluster, replica, dsn, workdir)))
    out.chmod(0o600)
    return out


def start_replica(
    cluster: Cluster,
    replica: str,
    dsn: str,
    workdir: Path,
    overrides: dict[str, str] | None = None,
) -> RunningBridge:
    """``hotline-bridge serve`` as replica ``replica`` (not waited for: see ``wait_owned``)."""
    config = write_replica_config(cluster, replica, dsn, workdir)
    env = {**os.environ, "HOTLINE_BRIDGE_LOG_FORMAT": "json", **(overrides or {})}
    argv = [sys.executable, "-m", "hotline_bridge", "serve", "--config", str(config)]
    log_path = workdir / "bridge.log"
    proc = _spawn(argv, env, log_path)
    topo = {"agents": cluster.agents()}
    return RunningBridge(cluster.url(replica), log_path, topo, proc, env, argv)


def health(rb: RunningBridge) -> dict[str, Any]:
    try:
        status, body = rb.request_sync("GET", "/healthz")
    except OSError:
        return {}
    return dict(body) if status == 200 and isinstance(body, dict) else {}


def wait_owned(
    cluster: Cluster, replicas: dict[str, RunningBridge], within: float = 30.0
) -> dict[str, str]:
    """Until every PBX is owned and its service ready; node -> owning replica."""
    deadline = time.monotonic() + within
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        owned: dict[str, str] = {}
        for name, rb in replicas.items():
            if rb.proc is not None and rb.proc.poll() is not None:
                raise RuntimeError(f"replica {name} exited:\n{rb.log_path.read_text()[-3000:]}")
            last = health(rb)
            for node, state in (last.get("nodes") or {}).items():
                if state.get("here") and state.get("ready"):
                    owned[node] = name
        if len(owned) == len(cluster.nodes):
            return owned
        time.sleep(0.1)
    raise RuntimeError(f"not every PBX owned and ready within {within} s; last health: {last}")


def wait_placed(
    cluster: Cluster, replicas: dict[str, RunningBridge], within: float = 30.0
) -> dict[str, str]:
    """Until every PBX is owned by its preferred replica (and ready); node -> owner. A replica
    that started late may find its PBX claimed by another; failback hands it back after the
    hold-down (3 lease periods)."""
    preferred = {n.name: n.prefer for n in cluster.nodes if n.prefer}
    deadline = time.monotonic() + within
    while True:
        owned = wait_owned(cluster, replicas, max(1.0, deadline - time.monotonic()))
        if all(owned.get(node) == name for node, name in preferred.items()):
            return owned
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the PBXes did not go to their preferred replicas: {owned}")
        time.sleep(0.2)


def start_pbxes(cluster: Cluster) -> list[Sandbox]:
    pbxes = [Sandbox(n.topology_path) for n in cluster.nodes]
    for pbx in pbxes:
        pbx.start()
    return pbxes


def stop_pbxes(cluster: Cluster) -> None:
    for n in cluster.nodes:
        Sandbox(n.topology_path).stop()


def _start(args: argparse.Namespace) -> int:
    from .pgserver import PgServer

    cluster = load_cluster()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    start_pbxes(cluster)
    pg = PgServer().start()
    dsn = pg.create_db("hotline")
    replicas = {
        name: start_replica(cluster, name, dsn, STATE_DIR / name) for name in cluster.replicas
    }
    owned = wait_placed(cluster, replicas)
    state = {
        "replicas": {n: rb.proc.pid for n, rb in replicas.items() if rb.proc is not None},
    }
    (STATE_DIR / "state.json").write_text(json.dumps(state))
    for name, rb in replicas.items():
        print(f"replica {name}: {rb.base_url} (log {rb.log_path})")
    for node, name in sorted(owned.items()):
        print(f"{node}: owned by replica {name}")
    print("stop with: make sandbox-cluster-stop")
    # The PostgreSQL server lives on until stop (pg_ctl runs it detached).
    _pg_keep(pg)
    return 0


def _pg_keep(pg: Any) -> None:
    keep = {"data": str(pg.data), "bin": str(pg.bindir), "root": str(pg.root)}
    (STATE_DIR / "pg.json").write_text(json.dumps(keep))


def _stop(args: argparse.Namespace) -> int:
    cluster = load_cluster()
    state_file = STATE_DIR / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        for pid in state.get("replicas", {}).values():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
        state_file.unlink()
    pg_file = STATE_DIR / "pg.json"
    if pg_file.exists():
        pg = json.loads(pg_file.read_text())
        cmd = [str(Path(pg["bin"]) / "pg_ctl"), "-D", pg["data"], "stop", "-m", "fast"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=False, capture_output=True, timeout=60)
        shutil.rmtree(pg["root"], ignore_errors=True)
        pg_file.unlink()
    stop_pbxes(cluster)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="3 PBXes, PostgreSQL, 3 replicas")
    sub.add_parser("stop", help="stop them all")
    args = parser.parse_args(argv)
    return _start(args) if args.command == "start" else _stop(args)


if __name__ == "__main__":
    sys.exit(main())
