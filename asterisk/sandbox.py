#!/usr/bin/env python3
"""The sandbox PBX: a real Asterisk 22 in a Debian sid chroot, configured from sandbox.toml.

    python3 asterisk/sandbox.py [--topology asterisk/sandbox.toml] COMMAND

    render [--out DIR]  render the site's Asterisk config set (default: into the chroot)
    start               provision the root if missing, render, start Asterisk, wait until it is
                        fully booted (AMI login + FullyBooted); a no-op if already running
    stop                `core stop now`, wait for the process, kill it if it lingers
    restart             `core restart now` and wait until fully booted again
    reload              re-render the configs and `core reload` (dialplan, queues, confbridge;
                        a changed SIP transport or AMI port needs `restart`)
    status              what runs where: PID, ports, config dir, log file (exit 1 if not running)
    rx "CLI command"    run an Asterisk CLI command and print its output
    root                print the chroot path (provisioning it first if it is missing)

Everything is keyed by the topology's [pbx].site, so several sites (the 12345 PBX here, a 110
PBX from another topology file) can run from the same chroot side by side:

    chroot:    /etc/hotline-sandbox/<site>/          rendered configs (asterisk.conf, ...)
               /var/lib/hotline-sandbox/<site>/      run/ (CLI socket), log/, spool/, db/, ...
    work tree: .sandbox/<site>/asterisk.pid          PID of the running Asterisk
               .sandbox/<site>/asterisk.log          symlink to the chroot's log/messages.log
               .sandbox/<site>/console.log           Asterisk's stdout/stderr

The functions are importable (stdlib only, Python 3.11): load_topology, render_files, render,
start, stop, restart, reload, status, rx, find_root, wait_fully_booted. The test suite drives
this file as a subprocess (see lab/sandbox.py), so the Asterisk process never becomes a
child of pytest.

Environment: HOTLINE_SANDBOX_ROOT uses an existing chroot instead of provision.sh's;
HOTLINE_SANDBOX_CACHE is passed on to provision.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_TOPOLOGY = HERE / "sandbox.toml"
TEMPLATE_DIR = HERE / "etc"
DIALPLAN_DIR = REPO / "dialplans"
PROVISION = HERE / "provision.sh"
STATE_BASE = REPO / ".sandbox"

CHROOT_ETC_BASE = "/etc/hotline-sandbox"
CHROOT_VAR_BASE = "/var/lib/hotline-sandbox"
MIN_VERSION = (22, 9)
BOOT_TIMEOUT = 30.0


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NUMBER_RE = re.compile(r"^[0-9+*#]+$")
_SECRET_RE = re.compile(r"^[\x21-\x7e]+$")  # printable, no blanks: safe in an AMI/config line
# asterisk.conf systemname: Asterisk keeps 19 characters; it becomes the Uniqueids' prefix
# (`pbx-1-1764432000.12`), so only what a call id may hold (letters, digits, '-').
_SYSTEM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,18}$")


class SandboxError(RuntimeError):
    """Anything that stops the sandbox from doing what was asked; the message says why."""


# --------------------------------------------------------------------------------------------
# topology
# --------------------------------------------------------------------------------------------


def load_topology(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read and check the topology TOML (default asterisk/sandbox.toml)."""
    p = Path(path) if path else DEFAULT_TOPOLOGY
    try:
        with p.open("rb") as f:
            topo = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SandboxError(f"cannot read topology {p}: {e}") from e
    validate_topology(topo)
    return topo


def _need(topo: dict[str, Any], section: str, key: str) -> Any:
    try:
        return topo[section][key]
    except KeyError:
        raise SandboxError(f"topology lacks [{section}].{key}") from None


def _loopback(value: Any, where: str) -> str:
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        raise SandboxError(f"{where} = {value!r} is not an IP literal") from None
    if ip.version != 4 or ip not in ipaddress.ip_network("127.0.0.0/8"):
        raise SandboxError(
            f"{where} = {value} is not in 127.0.0.0/8: the sandbox stays on loopback"
        )
    return str(ip)


def _port(value: Any, where: str) -> int:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise SandboxError(f"{where} = {value!r} is not a port number")
    return value


def _match(value: Any, regex: re.Pattern[str], where: str) -> str:
    if not isinstance(value, str) or not regex.match(value):
        raise SandboxError(f"{where} = {value!r} has characters a config file cannot take")
    return value


def validate_topology(topo: dict[str, Any]) -> None:
    """Refuse anything that would leave loopback or break a config line."""
    _match(str(_need(topo, "pbx", "site")), _NAME_RE, "[pbx].site")
    if "instance" in topo["pbx"]:
        _match(topo["pbx"]["instance"], _NAME_RE, "[pbx].instance")
    if "systemname" in topo["pbx"]:
        _match(topo["pbx"]["systemname"], _SYSTEM_NAME_RE, "[pbx].systemname")
    _loopback(_need(topo, "pbx", "sip_host"), "[pbx].sip_host")
    _port(_need(topo, "pbx", "sip_port"), "[pbx].sip_port")
    start, end = (
        _port(_need(topo, "pbx", "rtp_start"), "[pbx].rtp_start"),
        _port(_need(topo, "pbx", "rtp_end"), "[pbx].rtp_end"),
    )
    if start >= end:
        raise SandboxError("[pbx].rtp_start must be below [pbx].rtp_end")
    _loopback(_need(topo, "ami", "host"), "[ami].host")
    _port(_need(topo, "ami", "port"), "[ami].port")
    if "agi" in topo:  # the bridge's FastAGI hooks, called by the dialplan (HOTLINE_AGI)
        _loopback(_need(topo, "agi", "host"), "[agi].host")
        _port(_need(topo, "agi", "port"), "[agi].port")
    for section in ("ami", "sandbox_admin"):
        _match(_need(topo, section, "username"), _NAME_RE, f"[{section}].username")
        _match(_need(topo, section, "secret"), _SECRET_RE, f"[{section}].secret")
    _match(str(_need(topo, "citizens", "dial_number")), _NUMBER_RE, "[citizens].dial_number")
    _match(_need(topo, "citizens", "endpoint"), _NAME_RE, "[citizens].endpoint")
    _match(_need(topo, "citizens", "queue"), _NAME_RE, "[citizens].queue")
    _loopback(_need(topo, "citizens", "sip_host"), "[citizens].sip_host")
    _port(_need(topo, "citizens", "sip_port"), "[citizens].sip_port")
    if topo["citizens"].get("callback_endpoint"):
        _match(topo["citizens"]["callback_endpoint"], _NAME_RE, "[citizens].callback_endpoint")
        _port(_need(topo, "citizens", "callback_sip_port"), "[citizens].callback_sip_port")
    for i, port in enumerate(topo["citizens"].get("extra_sip_ports", [])):
        _port(port, f"[citizens].extra_sip_ports[{i}]")
    remote = topo.get("remote_site")
    if remote is not None:  # a remote seat group's PBX new citizen calls may overflow to
        _match(remote.get("endpoint"), _NAME_RE, "[remote_site].endpoint")
        _match(str(remote.get("number")), _NUMBER_RE, "[remote_site].number")
        _loopback(remote.get("sip_host"), "[remote_site].sip_host")
        _port(remote.get("sip_port"), "[remote_site].sip_port")
    agents = topo.get("agents") or []
    if not agents:
        raise SandboxError("topology has no [[agents]]")
    for i, a in enumerate(agents):
        _match(a.get("endpoint"), _NAME_RE, f"[[agents]][{i}].endpoint")
        _loopback(a.get("sip_host"), f"[[agents]][{i}].sip_host")
        _port(a.get("sip_port"), f"[[agents]][{i}].sip_port")
    for key, t in (topo.get("targets") or {}).items():
        _match(t.get("endpoint"), _NAME_RE, f"[targets.{key}].endpoint")
        _match(str(t.get("number")), _NUMBER_RE, f"[targets.{key}].number")
        _loopback(t.get("sip_host"), f"[targets.{key}].sip_host")
        _port(t.get("sip_port"), f"[targets.{key}].sip_port")
    desks = topo.get("desks") or {}
    for ep, port in (desks.get("ports") or {}).items():
        _match(ep, _NAME_RE, f"[desks.ports].{ep}")
        _loopback(desks.get("sip_host"), "[desks].sip_host")
        _port(port, f"[desks.ports].{ep}")
    county = topo.get("county_trunk")
    if county:
        _match(county.get("endpoint"), _NAME_RE, "[county_trunk].endpoint")
        _loopback(county.get("sip_host"), "[county_trunk].sip_host")
        _port(county.get("sip_port"), "[county_trunk].sip_port")
    endpoints = (
        [topo["citizens"]["endpoint"]]
        + [a["endpoint"] for a in agents]
        + [t["endpoint"] for t in (topo.get("targets") or {}).values()]
        + list(desks.get("ports") or {})
        + ([county["endpoint"]] if county else [])
        + ([remote["endpoint"]] if remote is not None else [])
        + _validate_drill(topo)
    )
    if len(set(endpoints)) != len(endpoints):
        raise SandboxError(f"endpoint names must be unique: {endpoints}")


def _validate_drill(topo: dict[str, Any]) -> list[str]:
    """Check the optional [agent_pool] and [drill] sections; return their endpoint names."""
    pool, drill = topo.get("agent_pool"), topo.get("drill")
    if pool is None and drill is None:
        return []
    if pool is None or drill is None:
        raise SandboxError("[agent_pool] and [drill] go together (the drill's peers)")
    count, first = pool.get("count"), pool.get("first_id")
    if not isinstance(count, int) or not 1 <= count <= 1000:
        raise SandboxError(f"[agent_pool].count = {count!r} must be 1..1000")
    if not isinstance(first, int) or not 1 <= first <= 10**8:
        raise SandboxError(f"[agent_pool].first_id = {first!r} must be a positive number")
    _match(pool.get("endpoint_prefix"), _NAME_RE, "[agent_pool].endpoint_prefix")
    _match(pool.get("token_prefix"), _SECRET_RE, "[agent_pool].token_prefix")
    _match(pool.get("queue"), _NAME_RE, "[agent_pool].queue")
    if pool["queue"] == topo["citizens"]["queue"]:
        raise SandboxError("[agent_pool].queue must not be the tests' queue [citizens].queue")
    _loopback(pool.get("sip_host"), "[agent_pool].sip_host")
    _port(pool.get("sip_port"), "[agent_pool].sip_port")
    for key in ("carrier_endpoint", "partner_endpoint"):
        _match(drill.get(key), _NAME_RE, f"[drill].{key}")
    _match(str(drill.get("partner_number")), _NUMBER_RE, "[drill].partner_number")
    _loopback(drill.get("sip_host"), "[drill].sip_host")
    for key in ("citizen_sip_port", "partner_sip_port"):
        _port(drill.get(key), f"[drill].{key}")
    for target, port in (drill.get("desks") or {}).items():
        _match(target, _NAME_RE, f"[drill.desks].{target}")
        _port(port, f"[drill.desks].{target}")
    return [
        drill["carrier_endpoint"],
        drill["partner_endpoint"],
        *drill_desks(topo),
        *pool_endpoints(topo),
    ]


DRILL_DESK_PREFIX = "drill-desk-"


def drill_desks(topo: dict[str, Any]) -> dict[str, int]:
    """The mix drill's desks ([drill.desks]): endpoint drill-desk-<target> -> its SIPp port."""
    drill = topo.get("drill") or {}
    return {f"{DRILL_DESK_PREFIX}{t}": int(p) for t, p in (drill.get("desks") or {}).items()}


def pool_agents(topo: dict[str, Any]) -> list[dict[str, Any]]:
    """The [agent_pool] expanded: id, endpoint, token per agent (as the bridge expands it)."""
    pool = topo.get("agent_pool")
    if not pool:
        return []
    out = []
    for n in range(pool["first_id"], pool["first_id"] + pool["count"]):
        out.append(
            {
                "id": str(n),
                "endpoint": f"{pool['endpoint_prefix']}{n}",
                "token": f"{pool['token_prefix']}{n}",
                "sip_host": pool["sip_host"],
                "sip_port": pool["sip_port"],
            }
        )
    return out


def pool_endpoints(topo: dict[str, Any]) -> list[str]:
    return [a["endpoint"] for a in pool_agents(topo)]


# --------------------------------------------------------------------------------------------
# the bridge's settings file
# --------------------------------------------------------------------------------------------

# The topology's sections that are the bridge's own settings; the others describe the PBX and
# its SIPp peers, and the bridge (strict: an unknown key is an error) must never see them.
BRIDGE_SECTIONS = (
    "ami", "http", "ops", "limits", "agi", "bridge", "agents", "api_clients", "partner", "targets",
    "duty_lines", "reports", "units", "follow_up", "log_format", "log_level", "phone_keys",
    "overflow",
)  # fmt: skip
# Where a SIPp peer listens, and how the PBX talks to it: the PBX's business, not the bridge's.
_PEER_KEYS = frozenset({"sip_host", "sip_port", "send_pai"})
_TARGET_PEER_KEYS = _PEER_KEYS | {"endpoint"}


def bridge_config(topo: dict[str, Any]) -> dict[str, Any]:
    """The bridge's settings for this sandbox site: its sections of the topology, the
    [agent_pool] expanded into agents (guessable tokens: sandbox only), peer addresses left out,
    and ``[bridge].mode = "sandbox"`` (production is the bridge's default)."""
    out: dict[str, Any] = {k: topo[k] for k in BRIDGE_SECTIONS if k in topo}
    out["agents"] = [
        {k: v for k, v in a.items() if k not in _PEER_KEYS}
        for a in [*topo.get("agents", []), *pool_agents(topo)]
    ]
    out["targets"] = {
        name: {k: v for k, v in t.items() if k not in _TARGET_PEER_KEYS}
        for name, t in (topo.get("targets") or {}).items()
    }
    out["bridge"] = {**topo.get("bridge", {}), "mode": "sandbox"}
    if out["bridge"].get("targets_path"):
        # The directory file replaces [targets] (whose tables then only place SIPp desks);
        # a relative path is the repository's.
        out.pop("targets")
        path = Path(out["bridge"]["targets_path"])
        out["bridge"]["targets_path"] = str(path if path.is_absolute() else REPO / path)
    return out


def write_bridge_config(topo: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# GENERATED by asterisk/sandbox.py bridge-config from the sandbox topology: edit that.\n"
        + toml_dumps(bridge_config(topo))
    )
    return out


def toml_dumps(data: dict[str, Any]) -> str:
    """TOML for the shapes a settings file has (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise SandboxError(f"cannot write {type(v).__name__} to TOML")

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else scalar(k)

    def table(prefix: str, d: dict[str, Any]) -> None:
        plain = {k: v for k, v in d.items() if not isinstance(v, dict) and not _tables(v)}
        if prefix and (plain or not d):
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{key(k)} = {scalar(v)}" for k, v in plain.items())
        for k, v in d.items():
            name = f"{prefix}.{key(k)}" if prefix else key(k)
            if isinstance(v, dict):
                table(name, v)
            elif _tables(v):
                for item in v:
                    lines.append(f"\n[[{name}]]")
                    lines.extend(f"{key(ik)} = {scalar(iv)}" for ik, iv in item.items())

    table("", data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def site_of(topo: dict[str, Any]) -> str:
    return str(topo["pbx"]["site"])


def instance_of(topo: dict[str, Any]) -> str:
    """What keys this PBX's directories: [pbx].instance if set, else the site. A second PBX of
    the same site (the two-site pair's 12345 beside the single-site sandbox) sets its own."""
    return str(topo["pbx"].get("instance") or site_of(topo))


# --------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------


def chroot_etc_dir(topo: dict[str, Any]) -> str:
    """The site's config directory as Asterisk (inside the chroot) sees it."""
    return f"{CHROOT_ETC_BASE}/{instance_of(topo)}"


def chroot_var_dir(topo: dict[str, Any]) -> str:
    return f"{CHROOT_VAR_BASE}/{instance_of(topo)}"


def chroot_asterisk_conf(topo: dict[str, Any]) -> str:
    return f"{chroot_etc_dir(topo)}/asterisk.conf"


def chroot_log_file(topo: dict[str, Any]) -> str:
    return f"{chroot_var_dir(topo)}/log/messages.log"


def in_root(root: Path, chroot_path: str) -> Path:
    return root / chroot_path.lstrip("/")


def state_dir(topo: dict[str, Any]) -> Path:
    return STATE_BASE / instance_of(topo)


def pid_file(topo: dict[str, Any]) -> Path:
    return state_dir(topo) / "asterisk.pid"


def host_log_file(topo: dict[str, Any], root: Path | None = None) -> Path:
    """Host path of Asterisk's own log file (logger.conf messages.log)."""
    root = root or site_root(topo)
    if root is None:
        raise SandboxError("the sandbox root is not provisioned yet")
    return in_root(root, chroot_log_file(topo))


# --------------------------------------------------------------------------------------------
# the chroot
# --------------------------------------------------------------------------------------------


def find_root(provision: bool = False) -> Path | None:
    """The provisioned chroot, or None. With provision=True, build it if missing."""
    override = os.environ.get("HOTLINE_SANDBOX_ROOT")
    if override:
        root = Path(override)
        if not (root / "usr/sbin/asterisk").exists():
            raise SandboxError(f"HOTLINE_SANDBOX_ROOT={root} has no usr/sbin/asterisk")
        return root
    check = subprocess.run(
        ["bash", str(PROVISION), "--check"], capture_output=True, text=True, check=False
    )
    if check.returncode == 0 and check.stdout.strip():
        return Path(check.stdout.strip().splitlines()[-1])
    if not provision:
        return None
    print(f"sandbox: provisioning the Asterisk root with {PROVISION} ...", file=sys.stderr)
    # stderr (progress) passes through; stdout's last line is the root path.
    proc = subprocess.run(["bash", str(PROVISION)], stdout=subprocess.PIPE, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SandboxError(f"{PROVISION} failed (exit {proc.returncode}); see its messages above")
    root = Path(lines[-1])
    if not (root / "usr/sbin/asterisk").exists():
        raise SandboxError(f"{PROVISION} printed {root}, which has no usr/sbin/asterisk")
    return root


def site_root(topo: dict[str, Any]) -> Path | None:
    """The chroot this site's Asterisk runs from (recorded at start), else the provisioned one.

    A running sandbox stays controllable after provision.sh changed (new hash, new root path)."""
    recorded = state_dir(topo) / "root"
    if running_pid(topo) is not None and recorded.exists():
        root = Path(recorded.read_text().strip())
        if (root / "usr/sbin/asterisk").exists():
            return root
    return find_root()


def _proc_mounted(root: Path) -> bool:
    target = str((root / "proc").resolve())
    with open("/proc/mounts") as f:
        return any(line.split()[1] == target for line in f)


def mount_proc(root: Path) -> None:
    if not _proc_mounted(root):
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)


def _processes_in(root: Path) -> list[int]:
    """PIDs of processes whose root directory is `root` (i.e. running inside this chroot)."""
    want = str(root.resolve())
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(d / "root") == want:
                    pids.append(int(d.name))
    return pids


def umount_proc_if_unused(root: Path) -> None:
    """Unmount the chroot's /proc unless something (another site's Asterisk) still runs there."""
    if _proc_mounted(root) and not _processes_in(root):
        subprocess.run(["umount", str(root / "proc")], check=False)


def _chroot_asterisk(root: Path, topo: dict[str, Any], *args: str) -> list[str]:
    return ["chroot", str(root), "/usr/sbin/asterisk", "-C", chroot_asterisk_conf(topo), *args]


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


def _peer_sections(topo: dict[str, Any]) -> str:
    """pjsip.conf sections for the carrier, every agent and every partner target."""
    c = topo["citizens"]
    out = [
        "; ---- generated from the topology (asterisk/sandbox.py) ----",
        "",
        f"; Carrier trunk: citizens' calls (SIPp citizen_uac.xml sends from "
        f"{c['sip_host']}:{c['sip_port']}).",
        f"[{c['endpoint']}](hotline-endpoint)",
        "context = hotline-citizens",
        "; The carrier vouches for the caller's number; take it from P-Asserted-Identity if sent.",
        "trust_id_inbound = yes",
        "",
        f"[{c['endpoint']}-identify]",
        "type = identify",
        f"endpoint = {c['endpoint']}",
        f"match = {c['sip_host']}:{c['sip_port']}",
        # More citizens' SIPp phones at once (each its own port): the same carrier trunk.
        *(f"match = {c['sip_host']}:{port}" for port in c.get("extra_sip_ports", [])),
        "",
    ]
    if c.get("callback_endpoint"):
        # Calls out to citizens (the follow-up call, 回访): the carrier's outgoing side, here a
        # SIPp "citizen phone" that answers and presses a key (RFC 4733 DTMF).
        ep = c["callback_endpoint"]
        out += [
            f"; Calls to citizens (follow-up): SIPp on {c['sip_host']}:{c['callback_sip_port']}.",
            f"[{ep}](hotline-endpoint)",
            "context = hotline-citizens",
            f"aors = {ep}",
            "dtmf_mode = rfc4733",
            "",
            f"[{ep}]",
            "type = aor",
            f"contact = sip:{c['sip_host']}:{c['callback_sip_port']}",
            "",
            f"[{ep}-identify]",
            "type = identify",
            f"endpoint = {ep}",
            f"match = {c['sip_host']}:{c['callback_sip_port']}",
            "",
        ]
    for a in topo["agents"]:
        ep = a["endpoint"]
        out += [
            f"; Agent {a.get('id', ep)} (SIPp agent_uas.xml on {a['sip_host']}:{a['sip_port']}).",
            f"[{ep}](hotline-endpoint)",
            "context = hotline-agents",
            f"aors = {ep}",
            "; The agent's phone may transfer by itself (SIP REFER) as well as through the bridge.",
            "allow_transfer = yes",
            "; Phone keys (*1, *2...) must arrive as RFC 4733 telephone-events (the phone offers",
            "; `telephone-event/8000` in its SDP); a phone that only sends SIP INFO needs",
            "; dtmf_mode = auto_info, one that only plays tones in the audio dtmf_mode = inband.",
            "dtmf_mode = rfc4733",
            # A seat that checks the caller (the remote seat group's): the citizen's number in
            # P-Asserted-Identity as well as From.
            *(["send_pai = yes"] if a.get("send_pai") else []),
            "",
            f"[{ep}]",
            "type = aor",
            f"contact = sip:{ep}@{a['sip_host']}:{a['sip_port']}",
            "",
            f"[{ep}-identify]",
            "type = identify",
            f"endpoint = {ep}",
            f"match = {a['sip_host']}:{a['sip_port']}",
            "",
        ]
    for key, t in (topo.get("targets") or {}).items():
        out += _partner_peer(
            t["endpoint"],
            f"Partner platform {key}: {t.get('label', '')} "
            f"(SIPp partner_*.xml on {t['sip_host']}:{t['sip_port']}).",
            f"sip:{t['number']}@{t['sip_host']}:{t['sip_port']}",
            t["sip_host"],
            t["sip_port"],
        )
    desks = topo.get("desks") or {}
    for ep, port in (desks.get("ports") or {}).items():
        # No user in the contact: Dial(PJSIP/1191@desk-119) puts 1191 in the request URI.
        out += _partner_peer(
            ep,
            f"Linkage desk {ep} (SIPp partner_uas.xml on {desks['sip_host']}:{port}).",
            f"sip:{desks['sip_host']}:{port}",
            desks["sip_host"],
            port,
        )
    if topo.get("county_trunk"):
        k = topo["county_trunk"]
        out += [
            f"; A county's own trunk: its calls are that county's (SIPp from "
            f"{k['sip_host']}:{k['sip_port']}).",
            f"[{k['endpoint']}](hotline-endpoint)",
            "context = hotline-citizens",
            "trust_id_inbound = yes",
            "",
            f"[{k['endpoint']}-identify]",
            "type = identify",
            f"endpoint = {k['endpoint']}",
            f"match = {k['sip_host']}:{k['sip_port']}",
            "",
        ]
    remote = topo.get("remote_site")
    if remote is not None:
        ep = remote["endpoint"]
        out += [
            "; Remote seat group (远程话务座席): the PBX new citizen calls overflow to while the",
            f"; queue is short of seats (dialplan hotline-overflow; PBX on "
            f"{remote['sip_host']}:{remote['sip_port']}).",
            f"[{ep}](hotline-endpoint)",
            "context = hotline-from-partner",
            f"aors = {ep}",
            "; The citizen's own number in From AND P-Asserted-Identity.",
            "send_pai = yes",
            "trust_id_outbound = yes",
            "trust_id_inbound = yes",
            "",
            f"[{ep}]",
            "type = aor",
            f"contact = sip:{remote['number']}@{remote['sip_host']}:{remote['sip_port']}",
            "",
            f"[{ep}-identify]",
            "type = identify",
            f"endpoint = {ep}",
            f"match = {remote['sip_host']}:{remote['sip_port']}",
            "",
        ]
    return "\n".join(out).rstrip("\n")


def _partner_peer(ep: str, comment: str, contact: str, host: str, port: int) -> list[str]:
    """A partner platform's or linkage desk's endpoint: carry-number identity both ways."""
    return [
        f"; {comment}",
        f"[{ep}](hotline-endpoint)",
        "context = hotline-from-partner",
        f"aors = {ep}",
        "; Carry-number transfer: the citizen's number in From AND P-Asserted-Identity, the",
        "; forwarding platform in Diversion and History-Info (from REDIRECTING).",
        "send_pai = yes",
        "trust_id_outbound = yes",
        "send_diversion = yes",
        "send_history_info = yes",
        "; Calls the partner hands to us assert the citizen's number the same way.",
        "trust_id_inbound = yes",
        "",
        f"[{ep}]",
        "type = aor",
        f"contact = {contact}",
        "",
        f"[{ep}-identify]",
        "type = identify",
        f"endpoint = {ep}",
        f"match = {host}:{port}",
        "",
    ]


def _queue_sections(topo: dict[str, Any]) -> str:
    q = topo["citizens"]["queue"]
    lines = [
        "; ---- generated from the topology (asterisk/sandbox.py) ----",
        "; Citizens wait here for the next free agent.",
        f"[{q}]",
        "; Spread calls over the agents, remembering where the last one went.",
        "strategy = rrmemory",
        "; Ring an agent 15 s, then try the next one after 1 s.",
        "timeout = 15",
        "retry = 1",
        "; Never offer a second call to an agent who is on one.",
        "ringinuse = no",
        "; Citizens may queue while no agent is free, and are never thrown out for that.",
        "joinempty = yes",
        "leavewhenempty = no",
        "autopause = no",
        "maxlen = 0",
        "wrapuptime = 0",
        "; Nothing is ever played to the caller (no sound files needed; Queue option 'r' rings).",
        "announce-frequency = 0",
        "min-announce-frequency = 0",
        "periodic-announce-frequency = 0",
        "announce-holdtime = no",
        "announce-position = no",
        "reportholdtime = no",
        "; MEMBERINTERFACE/MEMBERNAME and QEHOLDTIME/QEORIGINALPOS on the channels: the bridge",
        "; and the logs can tell which agent took the call and how long the citizen waited.",
        "setinterfacevar = yes",
        "setqueueentryvar = yes",
        "setqueuevar = yes",
        "",
    ]
    for a in topo["agents"]:
        lines.append(f"member => PJSIP/{a['endpoint']},0,{a['endpoint']}")
    return "\n".join(lines)


def _globals_conf(topo: dict[str, Any]) -> str:
    c = topo["citizens"]
    return "\n".join(
        [
            f"; hotline-globals.conf for site {site_of(topo)}: generated by asterisk/sandbox.py",
            "; from the topology; dialplans/hotline.conf reads these globals.",
            "[globals]",
            f"HOTLINE_SITE = {site_of(topo)}",
            f"HOTLINE_NUMBER = {c['dial_number']}",
            f"HOTLINE_QUEUE = {c['queue']}",
            "; The bridge's FastAGI hooks ([agi]); empty: the dialplan skips them.",
            "HOTLINE_AGI = "
            + (f"agi://{topo['agi']['host']}:{topo['agi']['port']}" if "agi" in topo else ""),
            "; The key every hook request carries ([agi].key of the bridge).",
            "HOTLINE_AGI_KEY = " + str(topo.get("agi", {}).get("key", "")),
            "; The agents' phone keys: features.conf [applicationmap] names; the ConfBridge menu.",
            f"DYNAMIC_FEATURES = {_dynamic_features(topo)}",
            f"HOTLINE_AGENT_MENU = {AGENT_KEY_MENU}",
            "",
        ]
    )


def _drill_peer_sections(topo: dict[str, Any]) -> str:
    """pjsip.conf sections of the load drill ([agent_pool], [drill]); "" without them.

    The pool's agents are all served by ONE SIPp UAS: Asterisk calls each at its own contact user
    (sip:pool2001@host:port), so they need no `identify` (nothing matches them by address, and
    one address:port could not tell 200 endpoints apart anyway). Requests the pool sends inside
    a call (the bench's SIP REFER, BYE) belong to that call's dialog, whose endpoint PJSIP
    already knows. The drill's citizens and 110 desk have their own ports, so a drill never
    competes with the tests' SIPp peers for a port."""
    pool, drill = topo.get("agent_pool"), topo.get("drill")
    if not pool or not drill:
        return ""
    host = drill["sip_host"]
    out = [
        "",
        "",
        "; ---- load drill and benchmark peers ([agent_pool], [drill]; asterisk/sandbox.py) ----",
        "",
        f"; The drill's carrier trunk (SIPp citizen_drill_uac.xml from {host}:"
        f"{drill['citizen_sip_port']}): its citizens wait in the pool's queue {pool['queue']}.",
        f"[{drill['carrier_endpoint']}](hotline-endpoint)",
        "context = hotline-drill-citizens",
        "allow = !all,alaw",
        "trust_id_inbound = yes",
        "",
        f"[{drill['carrier_endpoint']}-identify]",
        "type = identify",
        f"endpoint = {drill['carrier_endpoint']}",
        f"match = {host}:{drill['citizen_sip_port']}",
        "",
        f"; The drill's 110 desk (SIPp partner_drill_uas.xml on {host}:"
        f"{drill['partner_sip_port']}); the drill's bridge dials "
        f"PJSIP/{drill['partner_number']}@{drill['partner_endpoint']}.",
        f"[{drill['partner_endpoint']}](hotline-endpoint)",
        "context = hotline-from-partner",
        f"aors = {drill['partner_endpoint']}",
        "allow = !all,alaw",
        "send_pai = yes",
        "trust_id_outbound = yes",
        "send_diversion = yes",
        "send_history_info = yes",
        "trust_id_inbound = yes",
        "",
        f"[{drill['partner_endpoint']}]",
        "type = aor",
        f"contact = sip:{drill['partner_number']}@{host}:{drill['partner_sip_port']}",
        "",
        f"[{drill['partner_endpoint']}-identify]",
        "type = identify",
        f"endpoint = {drill['partner_endpoint']}",
        f"match = {host}:{drill['partner_sip_port']}",
        "",
    ]
    for ep, port in drill_desks(topo).items():
        # No user in the contact: Dial(PJSIP/1191@drill-desk-119) puts 1191 in the request URI,
        # which is how the mix drill's desk tells the jurisdictions apart. A-law only, as above.
        out += [
            f"; The mix drill's desk {ep} (SIPp desk_drill_uas.xml on {host}:{port}).",
            f"[{ep}](hotline-endpoint)",
            "context = hotline-from-partner",
            f"aors = {ep}",
            "allow = !all,alaw",
            "send_pai = yes",
            "trust_id_outbound = yes",
            "send_diversion = yes",
            "send_history_info = yes",
            "trust_id_inbound = yes",
            "",
            f"[{ep}]",
            "type = aor",
            f"contact = sip:{host}:{port}",
            "",
            f"[{ep}-identify]",
            "type = identify",
            f"endpoint = {ep}",
            f"match = {host}:{port}",
            "",
        ]
    out += [
        f"; {pool['count']} pool agents, one SIPp UAS on {pool['sip_host']}:{pool['sip_port']}.",
        "; hotline-drill-agents: the phones' own SIP REFER to 110 (the bench's native way).",
        "; A-law only, like the drill's citizens: no transcoding in the measured path.",
        "[pool-agent](!,hotline-endpoint)",
        "context = hotline-drill-agents",
        "allow = !all,alaw",
        "allow_transfer = yes",
        "",
    ]
    for a in pool_agents(topo):
        ep = a["endpoint"]
        out += [
            f"[{ep}](pool-agent)",
            f"aors = {ep}",
            f"[{ep}]",
            "type = aor",
            f"contact = sip:{ep}@{a['sip_host']}:{a['sip_port']}",
        ]
    return "\n".join(out).rstrip("\n")


def _drill_queue_sections(topo: dict[str, Any]) -> str:
    """The pool's queue: the tests' queue settings, the pool's members ("" without a pool)."""
    pool = topo.get("agent_pool")
    if not pool:
        return ""
    shadow = {
        **topo,
        "citizens": {**topo["citizens"], "queue": pool["queue"]},
        "agents": pool_agents(topo),
    }
    return "\n\n" + _queue_sections(shadow)


def _drill_dialplan(topo: dict[str, Any]) -> str:
    """hotline-drill.conf: the drill's two sandbox-only contexts (comments only without it)."""
    head = [
        f"; hotline-drill.conf for site {site_of(topo)}: generated by asterisk/sandbox.py from",
        "; [agent_pool] and [drill] of the topology. SANDBOX ONLY: the load drill's entry points.",
    ]
    pool, drill = topo.get("agent_pool"), topo.get("drill")
    if not pool or not drill:
        return "\n".join([*head, ""])
    partner = f"PJSIP/{drill['partner_number']}@{drill['partner_endpoint']}"
    return "\n".join(
        [
            *head,
            "",
            "; Drill citizens take the product's own entry (hotline-citizens, hooks included), but",
            "; wait in the pool's queue: a channel variable shadows the global of the same name.",
            "[hotline-drill-citizens]",
            f"exten => _[0-9+*#].,1,Set(HOTLINE_QUEUE={pool['queue']})",
            " same => n,Goto(hotline-citizens,${EXTEN},1)",
            "",
            "; Pool agents' phones. The bench's softphone-native transfer: a SIP REFER with",
            f"; Refer-To {drill['partner_number']} runs this on the citizen's channel (chan_pjsip",
            "; blind transfer into the transferer's context), carrying the citizen's number; the",
            "; handoff header names the citizen's number, as a phone knows no handoff record.",
            "[hotline-drill-agents]",
            f"exten => {drill['partner_number']},1,Dial({partner},20,"
            "b(hotline-handoff-headers^s^1(refer-${CALLERID(num)},)))",
            " same => n,Hangup()",
            "include => hotline-agents",
            "",
        ]
    )


# The agents' phone keys ([[phone_keys]]): the same text `hotline-bridge phone-keys` prints for
# the bridge's settings (hotline_bridge.keys.asterisk; a test keeps the two equal).
_IN_CALL_KEYS = ("carry_transfer", "three_way")  # the others act inside a three-way room
AGENT_KEY_MENU = "hotline_agent_keys"


def _applicationmap(topo: dict[str, Any]) -> str:
    return "\n".join(
        f"{k['name']} => {k['digits']},self/callee,"
        f"AGI(${{HOTLINE_AGI}}/key?key=${{HOTLINE_AGI_KEY}},{k['name']})"
        for k in topo.get("phone_keys", [])
        if k["action"] in _IN_CALL_KEYS
    )


def _dynamic_features(topo: dict[str, Any]) -> str:
    return "#".join(k["name"] for k in topo.get("phone_keys", []) if k["action"] in _IN_CALL_KEYS)


def _agent_key_menu(topo: dict[str, Any]) -> str:
    lines = [f"[{AGENT_KEY_MENU}]", "type = menu"]
    lines += [
        f"{k['digits']} = dialplan_exec(hotline-keys,{k['name']},1)"
        for k in topo.get("phone_keys", [])
        if k["action"] not in _IN_CALL_KEYS
    ]
    return "\n".join(lines)


def template_values(topo: dict[str, Any]) -> dict[str, str]:
    pbx, ami, admin = topo["pbx"], topo["ami"], topo["sandbox_admin"]
    return {
        "site": site_of(topo),
        "system_name": _system_name_line(topo),
        "etc_dir": chroot_etc_dir(topo),
        "var_dir": chroot_var_dir(topo),
        "log_file": chroot_log_file(topo),
        "sip_host": str(pbx["sip_host"]),
        "sip_port": str(pbx["sip_port"]),
        "rtp_start": str(pbx["rtp_start"]),
        "rtp_end": str(pbx["rtp_end"]),
        "ami_host": str(ami["host"]),
        "ami_port": str(ami["port"]),
        "ami_user": ami["username"],
        "ami_secret": ami["secret"],
        "admin_user": admin["username"],
        "admin_secret": admin["secret"],
        "peer_sections": _peer_sections(topo) + _drill_peer_sections(topo),
        "queue_sections": _queue_sections(topo) + _drill_queue_sections(topo),
        "applicationmap": _applicationmap(topo),
        "agent_key_menu": _agent_key_menu(topo),
    }


def _system_name_line(topo: dict[str, Any]) -> str:
    name = topo["pbx"].get("systemname")
    return f"systemname = {name}" if name else "; systemname: not set ([pbx].systemname)"


def render_files(topo: dict[str, Any]) -> dict[str, str]:
    """The site's complete config set: {file name: content}. Pure and deterministic."""
    values = template_values(topo)
    files: dict[str, str] = {}
    # Every asterisk/etc/*.conf is a template (string.Template: ${name}, $$ for a literal $).
    for template in sorted(TEMPLATE_DIR.glob("*.conf")):
        name = template.name
        text = template.read_text()
        try:
            files[name] = string.Template(text).substitute(values)
        except (KeyError, ValueError) as e:
            raise SandboxError(f"template {template}: bad placeholder {e}") from e
    files["hotline-globals.conf"] = _globals_conf(topo)
    files["hotline-drill.conf"] = _drill_dialplan(topo)
    # The dialplans are copied verbatim (they are full of Asterisk's own ${...}).
    for dp in sorted(DIALPLAN_DIR.glob("*.conf")):
        files[dp.name] = dp.read_text()
    return files


def render(topo: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the config set into out_dir, replacing what was there. Returns the files written."""
    out = Path(out_dir)
    files = render_files(topo)
    tmp = out.with_name(out.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, text in files.items():
        (tmp / name).write_text(text)
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return [out / name for name in files]


# --------------------------------------------------------------------------------------------
# AMI readiness (raw socket, no dependencies)
# --------------------------------------------------------------------------------------------


def _read_message(sock: socket.socket, buf: bytearray, deadline: float) -> dict[str, str]:
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("AMI read timed out")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("AMI closed the connection")
        buf += chunk
    raw, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    msg: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            msg.setdefault(key.strip(), value.strip())
    return msg


def ami_fully_booted(
    host: str, port: int, username: str, secret: str, timeout: float = 5.0
) -> bool:
    """Log in and wait for Event: FullyBooted (sent at login once Asterisk is up)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        buf = bytearray()
        while b"\r\n" not in buf:  # banner: "Asterisk Call Manager/x.y.z"
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("AMI closed the connection before its banner")
            buf += chunk
        _, _, rest = bytes(buf).partition(b"\r\n")
        buf[:] = rest
        sock.sendall(
            (
                "Action: Login\r\nActionID: sandbox-login\r\n"
                f"Username: {username}\r\nSecret: {secret}\r\nEvents: system\r\n\r\n"
            ).encode()
        )
        while True:
            msg = _read_message(sock, buf, deadline)
            if msg.get("Response") == "Error":
                raise SandboxError(f"AMI login as {username} refused: {msg.get('Message')}")
            if msg.get("Event") == "FullyBooted":
                with contextlib.suppress(OSError):
                    sock.sendall(b"Action: Logoff\r\n\r\n")
                return True


def wait_fully_booted(
    topo: dict[str, Any], timeout: float = BOOT_TIMEOUT, pid: int | None = None
) -> float:
    """Block until AMI accepts the bridge user and reports FullyBooted; returns seconds waited."""
    ami = topo["ami"]
    t0 = time.monotonic()
    deadline = t0 + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            raise SandboxError(f"Asterisk (PID {pid}) exited while starting{_log_tails(topo)}")
        try:
            left = max(0.5, deadline - time.monotonic())
            if ami_fully_booted(ami["host"], ami["port"], ami["username"], ami["secret"], left):
                return time.monotonic() - t0
        except SandboxError:
            raise
        except (OSError, TimeoutError, ConnectionError) as e:
            last = e
        time.sleep(0.1)
    raise SandboxError(
        f"Asterisk of site {site_of(topo)} not fully booted within {timeout:.0f} s "
        f"(AMI {ami['host']}:{ami['port']}: {last}){_log_tails(topo)}"
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(unreadable)"


def _log_tails(topo: dict[str, Any]) -> str:
    parts = []
    root = site_root(topo)
    if root is not None:
        log = host_log_file(topo, root)
        parts.append(f"\n--- last lines of {log} ---\n{_tail(log)}")
    console = state_dir(topo) / "console.log"
    parts.append(f"\n--- last lines of {console} ---\n{_tail(console, 15)}")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# process control
# --------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def running_pid(topo: dict[str, Any]) -> int | None:
    """PID of this site's Asterisk if the PID file names a live asterisk process."""
    try:
        pid = int(pid_file(topo).read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if not any(part.endswith(b"asterisk") for part in cmdline[:2]):
        return None  # PID reused by something else
    if chroot_asterisk_conf(topo).encode() not in cmdline:
        return None
    return pid


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start(topo: dict[str, Any], timeout: float = BOOT_TIMEOUT) -> dict[str, Any]:
    """Start the site's Asterisk (provisioning and rendering first); idempotent."""
    pid = running_pid(topo)
    if pid is not None:
        wait_fully_booted(topo, timeout=timeout, pid=pid)
        info = status(topo)
        info["started"] = False
        return info
    if os.geteuid() != 0:
        raise SandboxError("starting the sandbox needs root (mount, chroot)")
    ami = topo["ami"]
    if _port_in_use(ami["host"], ami["port"]):
        raise SandboxError(
            f"AMI port {ami['host']}:{ami['port']} is already in use by another process; "
            "is another Asterisk running without this sandbox's PID file?"
        )
    root = find_root(provision=True)
    assert root is not None
    render(topo, in_root(root, chroot_etc_dir(topo)))
    var_dir = in_root(root, chroot_var_dir(topo))
    for sub in ("lib", "db", "keys", "spool", "run", "log", "cache"):
        (var_dir / sub).mkdir(parents=True, exist_ok=True)
    mount_proc(root)
    sdir = state_dir(topo)
    sdir.mkdir(parents=True, exist_ok=True)
    link = sdir / "asterisk.log"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(host_log_file(topo, root))
    (sdir / "root").write_text(f"{root}\n")
    console = (sdir / "console.log").open("ab")
    # -f: no fork (the PID is ours to watch); -n: no colour; -g: core dump on crash.
    # Never -c: with stdin closed the console spins printing blanks (gigabytes of output).
    # chroot execs asterisk, so the PID of this process is Asterisk's.
    proc = subprocess.Popen(
        _chroot_asterisk(root, topo, "-f", "-n", "-g"),
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # not killed with the shell/pytest that started it
        close_fds=True,
    )
    console.close()
    pid_file(topo).write_text(f"{proc.pid}\n")
    try:
        waited = wait_fully_booted(topo, timeout=timeout, pid=proc.pid)
    except SandboxError:
        _kill(proc.pid)
        pid_file(topo).unlink(missing_ok=True)
        raise
    # Do not leave a Popen behind that would warn (ResourceWarning) when collected; the process
    # is meant to outlive us.
    proc.returncode = 0
    info = status(topo)
    info["started"] = True
    info["boot_seconds"] = round(waited, 3)
    return info


def _kill(pid: int, grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def stop(topo: dict[str, Any], timeout: float = 15.0) -> bool:
    """Stop the site's Asterisk. Returns False if it was not running."""
    pid = running_pid(topo)
    root = site_root(topo)
    if pid is None:
        pid_file(topo).unlink(missing_ok=True)
        return False
    assert root is not None
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            _chroot_asterisk(root, topo, "-rx", "core stop now"),
            capture_output=True,
            timeout=10,
            check=False,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        _kill(pid)
    pid_file(topo).unlink(missing_ok=True)
    umount_proc_if_unused(root)
    return True


def rx(topo: dict[str, Any], command: str, timeout: float = 15.0) -> str:
    """Run one Asterisk CLI command on the running site (asterisk -rx) and return its output."""
    root = site_root(topo)
    if root is None or running_pid(topo) is None:
        raise SandboxError(f"the sandbox PBX of site {site_of(topo)} is not running")
    proc = subprocess.run(
        _chroot_asterisk(root, topo, "-rx", command),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise SandboxError(f"asterisk -rx {command!r} failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def restart(topo: dict[str, Any], timeout: float = BOOT_TIMEOUT) -> float:
    """`core restart now` (Asterisk re-execs in place: same PID) and wait until fully booted."""
    pid = running_pid(topo)
    if pid is None:
        raise SandboxError(f"the sandbox PBX of site {site_of(topo)} is not running")
    t0 = time.monotonic()
    root = site_root(topo)
    assert root is not None
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            _chroot_asterisk(root, topo, "-rx", "core restart now"),
            capture_output=True,
            timeout=10,
            check=False,
        )
    # The old instance must go away first, or we would see its FullyBooted.
    ami = topo["ami"]
    deadline = t0 + timeout
    while time.monotonic() < deadline and _port_in_use(ami["host"], ami["port"]):
        time.sleep(0.02)
    wait_fully_booted(topo, timeout=max(1.0, deadline - time.monotonic()), pid=pid)
    return time.monotonic() - t0


def reload(topo: dict[str, Any]) -> str:
    """Re-render the site's configs into the chroot and `core reload`."""
    root = site_root(topo)
    if root is None or running_pid(topo) is None:
        raise SandboxError(f"the sandbox PBX of site {site_of(topo)} is not running")
    render(topo, in_root(root, chroot_etc_dir(topo)))
    out = rx(topo, "core reload")
    # Asterisk 22: an endpoint that a reload ADDS stays "Unavailable" (device state; a queue
    # then never rings it) until res_pjsip is reloaded once more (verified with the agent pool).
    return out + rx(topo, "module reload res_pjsip.so")


def asterisk_version(topo: dict[str, Any]) -> str:
    return rx(topo, "core show version").strip()


def status(topo: dict[str, Any]) -> dict[str, Any]:
    root = site_root(topo)
    pid = running_pid(topo)
    info: dict[str, Any] = {
        "site": site_of(topo),
        "running": pid is not None,
        "pid": pid,
        "root": str(root) if root else None,
        "config_dir": str(in_root(root, chroot_etc_dir(topo))) if root else None,
        "log_file": str(host_log_file(topo, root)) if root else None,
        "log_link": str(state_dir(topo) / "asterisk.log"),
        "console_log": str(state_dir(topo) / "console.log"),
        "pid_file": str(pid_file(topo)),
        "ami": f"{topo['ami']['host']}:{topo['ami']['port']}",
        "sip": f"udp {topo['pbx']['sip_host']}:{topo['pbx']['sip_port']}",
    }
    if pid is not None:
        with contextlib.suppress(SandboxError, subprocess.TimeoutExpired):
            info["version"] = asterisk_version(topo)
    return info


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _print_info(info: dict[str, Any]) -> None:
    for key, value in info.items():
        print(f"{key:12} {value}")


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--topology", default=argparse.SUPPRESS, help=f"topology TOML (default {DEFAULT_TOPOLOGY})"
    )
    parser = argparse.ArgumentParser(
        prog="sandbox.py", description=__doc__.split("\n\n")[0], parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_render = sub.add_parser("render", parents=[common], help="render the config set")
    p_render.add_argument("--out", help="directory to render into (default: into the chroot)")
    p_start = sub.add_parser("start", parents=[common], help="start (and provision) the PBX")
    p_start.add_argument("--timeout", type=float, default=BOOT_TIMEOUT)
    sub.add_parser("stop", parents=[common], help="stop the PBX")
    sub.add_parser("restart", parents=[common], help="core restart now, wait until booted")
    sub.add_parser("reload", parents=[common], help="re-render configs and core reload")
    sub.add_parser("status", parents=[common], help="show PID, ports, paths")
    p_rx = sub.add_parser("rx", parents=[common], help="run an Asterisk CLI command")
    p_rx.add_argument("cli", help='e.g. "pjsip show endpoints"')
    sub.add_parser("root", parents=[common], help="print the chroot path (provision if missing)")
    p_bc = sub.add_parser(
        "bridge-config", parents=[common], help="write the bridge's settings file for this site"
    )
    p_bc.add_argument("--out", type=Path, help="file to write (default: print it)")
    args = parser.parse_args(argv)

    try:
        topo = load_topology(getattr(args, "topology", None))
        if args.command == "render":
            if args.out:
                out = Path(args.out)
            else:
                root = find_root()
                if root is None:
                    raise SandboxError(
                        "no provisioned root yet: use --out DIR, or run `root` first"
                    )
                out = in_root(root, chroot_etc_dir(topo))
            for path in render(topo, out):
                print(path)
        elif args.command == "start":
            info = start(topo, timeout=args.timeout)
            if info.pop("started"):
                print(f"sandbox: site {info['site']} started (PID {info['pid']})", file=sys.stderr)
            else:
                print(f"sandbox: site {info['site']} already running and healthy", file=sys.stderr)
            _print_info(info)
        elif args.command == "stop":
            if stop(topo):
                print(f"sandbox: site {site_of(topo)} stopped", file=sys.stderr)
            else:
                print(f"sandbox: site {site_of(topo)} was not running", file=sys.stderr)
        elif args.command == "restart":
            took = restart(topo)
            print(f"sandbox: site {site_of(topo)} restarted, fully booted after {took:.2f} s")
        elif args.command == "reload":
            sys.stdout.write(reload(topo))
            print(
                f"sandbox: site {site_of(topo)} configs re-rendered and reloaded", file=sys.stderr
            )
        elif args.command == "status":
            info = status(topo)
            _print_info(info)
            return 0 if info["running"] else 1
        elif args.command == "rx":
            sys.stdout.write(rx(topo, args.cli))
        elif args.command == "root":
            print(find_root(provision=True))
        elif args.command == "bridge-config":
            if args.out:
                print(write_bridge_config(topo, args.out))
            else:
                sys.stdout.write(toml_dumps(bridge_config(topo)))
    except SandboxError as e:
        print(f"sandbox: ERROR: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
