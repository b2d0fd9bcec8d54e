"""Service settings: one TOML file plus ``HOTLINE_BRIDGE_*`` environment overrides.

Strict: an unknown or misspelt key anywhere is an error naming it (``ring_timout_s = 90`` must
not load and silently ring for 20 s). Nested fields are overridden from the environment with
``__`` between levels, e.g. ``HOTLINE_BRIDGE_AMI__SECRET``. Every secret may instead be read from
a file that only its owner can read (``secret_file``, ``token_file``, e.g.
``HOTLINE_BRIDGE_AMI__SECRET_FILE``), so it need not sit in the TOML or the environment.

Production is the default mode; ``[bridge].mode = "sandbox"`` is the exception that must say so
(the sandbox writes its bridge settings from its topology: ``asterisk/sandbox.py bridge-config``).
Production refuses what is only safe on loopback: sandbox secrets, short AMI secrets, plain HTTP
off loopback (see :func:`production_problems`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hotline_bridge.core.vocabulary import CategoryCode, Jurisdiction

CONFIG_ENV = "HOTLINE_BRIDGE_CONFIG"

# Identifiers that end up inside AMI fields, dial strings and URLs: keep them boring.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
DialNumber = Annotated[str, Field(pattern=r"^[0-9*#+]{1,32}$")]
# A single PJSIP or Local dial string (targets, duty lines): never arbitrary Dial() options.
DialString = Annotated[str, Field(pattern=r"^(PJSIP|Local)/[A-Za-z0-9_.@+*#-]{1,80}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """``<name>_file = "/path"`` fills a secret field ``<name>`` from that file."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for field, info in cls.model_fields.items():
            path = out.pop(f"{field}_file", None)
            if path is None or info.annotation not in (SecretStr, SecretStr | None):
                if path is not None:
                    raise ValueError(f"{field}_file: {field} is not a secret")
                continue
            if field in data:
                raise ValueError(f"give {field} or {field}_file, not both")
            out[field] = read_secret_file(Path(str(path)), f"{field}_file")
        return out


def read_secret_file(path: Path, where: str) -> str:
    """A secret from a file only its owner may read (a group- or world-readable one is refused)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ValueError(f"{where}: {path} is readable by others (mode {mode & 0o777:o})")
    if not text:
        raise ValueError(f"{where}: {path} is empty")
    return text


class AmiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: Identifier
    secret: SecretStr
    action_timeout_s: float = Field(5.0, gt=0, le=60)
    ping_interval_s: float = Field(5.0, gt=0, le=300)
    ping_timeout_s: float = Field(2.0, gt=0, le=60)


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8345, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8345"
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Slow or idle clients: a connection without a whole request (headers and body) for this long
    # is closed; a body that trickles in slower than body_timeout_s is answered 408.
    idle_timeout_s: float = Field(15.0, ge=1.0, le=300.0)
    body_timeout_s: float = Field(10.0, ge=1.0, le=120.0)
    # Open connections the listener holds; beyond these a client gets 503 at once. A centre's
    # agents behind one NAT share a peer address: keep the per-peer cap above its seat count.
    max_connections: int = Field(1024, ge=16, le=65536)
    max_connections_per_peer: int = Field(256, ge=4, le=65536)
    # HTTPS for the agents' API and the partner receiver: a PEM certificate (chain) and its key.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        for f in (self.tls_cert_file, self.tls_key_file):
            if f is not None and not f.is_file():
                raise ValueError(f"{f}: no such file")
        return self

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-:\[\]]+(/[A-Za-z0-9._~/-]*)?", value):
            raise ValueError("must be an http(s) URL without query or fragment")
        return value.rstrip("/")


class LimitSettings(_Section):
    """Bounds on what one API user can make the bridge do (429 with Retry-After beyond them)."""

    # Every request that changes something (hotkeys, events, work orders...), per principal.
    per_principal_per_s: float = Field(5.0, gt=0, le=1000)
    burst: int = Field(20, ge=1, le=10_000)
    # Duty-line reminder calls (110 值班电话) per jurisdiction per hour; orders beyond it are
    # covered by the next call (merged), never by a call of their own.
    duty_calls_per_hour: int = Field(6, ge=1, le=120)


class OpsSettings(_Section):
    """A separate listener for ``/metrics`` and ``/healthz`` (loopback by default): with a port,
    the agents' API port serves neither."""

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)


class AgiSettings(_Section):
    """The FastAGI server of the dialplan's hooks (``hotline_bridge.agi``, dialplans/README.md).

    FastAGI has no authentication: whoever connects can ask about numbers and handoff ids, so the
    server listens on loopback only (Asterisk on the same host). Port 0 picks a free port.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=0, le=65535)
    # The shared key the dialplan passes (``/entry?key=${HOTLINE_AGI_KEY}``): without it, any
    # local process could ask the hooks about numbers. Required in production.
    key: SecretStr | None = Field(None, min_length=16)
    # Longest time for one request apart from the receiving hook's wait: reading Asterisk's
    # environment, deciding, setting the variables. The dialplan waits this long at most.
    request_timeout_s: float = Field(0.5, gt=0, le=5)
    # The receiving hook waits this long for a record whose push is still in flight, polling.
    receive_wait_s: float = Field(1.5, ge=0, le=5)
    receive_poll_s: float = Field(0.05, gt=0, le=1)
    # Jurisdiction (属地) of a citizen's call: by the number dialled, else by the trunk (PJSIP
    # endpoint) it arrived on, else "unknown".
    jurisdiction_by_number: dict[DialNumber, Jurisdiction] = Field(default_factory=dict)
    jurisdiction_by_endpoint: dict[Identifier, Jurisdiction] = Field(default_factory=dict)
    # Nuisance flag (滋扰治理): at least `nuisance_threshold` records of these categories for the
    # caller's number within `nuisance_window_days`.
    nuisance_categories: tuple[CategoryCode, ...] = ("police.harassment",)
    nuisance_threshold: int = Field(3, ge=1, le=1000)
    nuisance_window_days: int = Field(90, ge=1, le=3650)

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        try:
            loopback = ipaddress.ip_address(value).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError("must be a loopback IP literal (FastAGI has no authentication)")
        return value


class AgentSettings(_Section):
    """An agent seat: who presses the hotkeys, on which PJSIP endpoint, with which API token."""

    id: Identifier
    endpoint: Identifier
    token: SecretStr = Field(min_length=16)


class ApiClientSettings(_Section):
    """A non-agent API user: a supervisor (sees full numbers, audited), a partner platform, a
    handling unit (``id`` is then the unit's id in the units directory), or a plain line's desk
    (``line``: reads the records handed to its target, whose ``api_client`` names this ``id``)."""

    id: Identifier
    role: Annotated[str, Field(pattern=r"^(supervisor|partner|unit|line)$")]
    token: SecretStr = Field(min_length=16)


class TargetSettings(_Section):
    """A partner platform a call can be handed to (the target directory is configuration)."""

    label: str = Field(min_length=1, max_length=80)
    number: DialNumber
    # What Asterisk dials, e.g. PJSIP/110@partner-110. Checked to be a single PJSIP or Local dial
    # string so a config typo cannot turn into an arbitrary Dial().
    dial: DialString
    forwarding_number: DialNumber
    ring_timeout_s: int | None = Field(None, ge=1, le=120)

    @property
    def endpoint(self) -> str:
        """The PJSIP endpoint the dial string goes through (``PJSIP/110@partner-110``)."""
        tech, _, rest = self.dial.partition("/")
        if tech != "PJSIP":
            return ""
        return rest.rpartition("@")[2]


KeyAction = Literal["carry_transfer", "three_way", "leave", "cancel", "add_partner"]
# Keys on a two-party call go to features.conf's [applicationmap]; keys in a three-way call to
# the agent's ConfBridge menu (dynamic features do not run inside ConfBridge).
CALL_KEY_ACTIONS = frozenset({"carry_transfer", "three_way"})
# Keys that name a target: the call keys, and "add_partner" (a room key: multi-party).
TARGET_KEY_ACTIONS = CALL_KEY_ACTIONS | {"add_partner"}


class PhoneKeySettings(_Section):
    """A feature key the agent dials on the phone during a call, e.g. ``*1`` = carry to 110.

    ``name`` is what Asterisk's config and the bridge call it (the extension the key runs in
    ``[hotline-keys]``); ``hotline-bridge phone-keys`` prints the Asterisk side of the table.
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,19}$")]
    digits: Annotated[str, Field(pattern=r"^[*#0-9]{1,4}$")]
    action: KeyAction
    target: Identifier | None = None  # carry_transfer, three_way and add_partner only

    @model_validator(mode="after")
    def _target_fits_action(self) -> PhoneKeySettings:
        needs = self.action in TARGET_KEY_ACTIONS
        if needs and self.target is None:
            raise ValueError(f"key {self.name}: action {self.action} needs a target")
        if not needs and self.target is not None:
            raise ValueError(f"key {self.name}: action {self.action} takes no target")
        return self

    @property
    def in_call(self) -> bool:
        """Dialled on a two-party call (applicationmap), not inside a three-way room (menu)."""
        return self.action in CALL_KEY_ACTIONS


class DutyLineSettings(_Section):
    """The 110 duty lines (辖区110值班电话) rung when a police matter arrives online.

    One optional dial string per jurisdiction, else ``default``; none at all means no reminder
    call (the work order is still filed). ``caller_id`` is the platform number the duty desk sees
    (default: this site's number); ``notice`` the prompts played once it answers. An attempt that
    is not answered is retried ``retry_after_s`` later, ``attempts`` times in all.
    """

    default: DialString | None = None
    gucheng: DialString | None = None
    yulong: DialString | None = None
    yongsheng: DialString | None = None
    huaping: DialString | None = None
    ninglang: DialString | None = None
    attempts: int = Field(3, ge=1, le=10)
    retry_after_s: float = Field(30.0, ge=0.5, le=3600)
    ring_timeout_s: int = Field(20, ge=1, le=120)
    caller_id: DialNumber | None = None
    notice: Annotated[str, Field(pattern=r"^[a-z0-9_/-]{1,40}(&[a-z0-9_/-]{1,40}){0,7}$")] = (
        "vm-youhave&digits/1&vm-message"
    )

    def dial_for(self, jurisdiction: str) -> str | None:
        """The duty line of ``jurisdiction``, else the default (None: no duty line)."""
        line = getattr(self, jurisdiction, None) if jurisdiction in _JURISDICTIONS else None
        return line or self.default


_JURISDICTIONS = frozenset(j.value for j in Jurisdiction) - {"unknown"}


class NoticeSettings(_Section):
    """Notices of a major emergency (互相通报) to the linkage network: the record is pushed to
    linked platforms; each plain line chosen is rung from ``caller_id`` (default: this site's
    number) and hears ``prompt``, retried ``retry_after_s`` later, ``attempts`` times in all.
    ``per_hour`` bounds how many notices the site sends in an hour (each rings several desks)."""

    attempts: int = Field(3, ge=1, le=10)
    retry_after_s: float = Field(30.0, ge=0.5, le=3600)
    ring_timeout_s: int = Field(20, ge=1, le=120)
    caller_id: DialNumber | None = None
    prompt: Annotated[str, Field(pattern=r"^[a-z0-9_/-]{1,40}(&[a-z0-9_/-]{1,40}){0,7}$")] = (
        "vm-youhave&digits/1&vm-message"
    )
    per_hour: int = Field(12, ge=1, le=200)


class PartnerSettings(_Section):
    """The other platform's bridge: where handoffs are pushed, and the keys both sides sign with.

    Each direction has its own key: we sign with ``key_id``/``secret`` (the partner lists them in
    its ``accept_keys``), and accept what the partner signs with the keys in ``accept_keys``.
    """

    site: Annotated[str, Field(pattern=r"^(12345|110)$")]
    base_url: str
    key_id: Identifier
    secret: SecretStr = Field(min_length=32)
    accept_keys: dict[Identifier, SecretStr] = Field(default_factory=dict)
    replay_window_s: int = Field(300, ge=5, le=3600)
    retry_initial_s: float = Field(0.5, gt=0, le=60)
    retry_max_s: float = Field(60.0, gt=0, le=3600)
    push_timeout_s: float = Field(5.0, gt=0, le=60)
    poll_interval_s: float = Field(0.05, gt=0, le=10)
    # The CA (PEM) that signed the partner's HTTPS certificate; unset: the system's CAs.
    ca_file: Path | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-:\[\]]+", value.rstrip("/")):
            raise ValueError("must be an http(s) base URL without a path")
        return value.rstrip("/")

    @field_validator("accept_keys")
    @classmethod
    def _strong_keys(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        weak = sorted(k for k, v in keys.items() if len(v.get_secret_value()) < 32)
        if weak:
            raise ValueError(f"accept_keys shorter than 32 characters: {', '.join(weak)}")
        return keys


class BridgeSettings(_Section):
    # production (the default) refuses sandbox shortcuts; "sandbox" is for the lab PBX only.
    mode: Literal["production", "sandbox"] = "production"
    site: Annotated[str, Field(pattern=r"^(12345|110)$")] = "12345"
    return_queue: Identifier
    ring_timeout_s: int = Field(20, ge=1, le=120)
    return_timeout_s: int = Field(15, ge=1, le=120)
    store_path: Path = Path("hotline-bridge.sqlite3")
    # The matter catalog (事项清单) to route by; None means the one shipped with the package.
    catalog_path: Path | None = None
    # The linkage directory (联动单位: 110, 119, 120, 122, duty lines...; see
    # hotline_bridge/directory/targets.toml). None: the [targets] tables below are the directory.
    targets_path: Path | None = None


class ClusterNode(_Section):
    """One PBX of a site with several (``[[cluster.nodes]]``): its AMI, and where the replica
    that owns it serves that PBX's bridge on its own host (loopback ports: the replica's API
    port in front forwards there)."""

    name: Identifier  # the lease's name; calls are known by the node they arrived on
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(5038, ge=1, le=65535)
    api_port: int = Field(ge=1, le=65535)  # the node's service, on loopback of its owner
    agi_port: int | None = Field(None, ge=1, le=65535)  # None: no FastAGI hooks for this PBX
    prefer: Identifier | None = None  # the replica that takes it first (spreads the PBXes)


class ClusterSettings(_Section):
    """Replicas of the bridge sharing the store. With ``node``: one PBX, one replica active (it
    holds the PBX's lease and drives its AMI), the others stand by, forward requests to it, and
    take over when its lease lapses. With ``[[cluster.nodes]]``: several PBXes, each owned by
    exactly one replica at a time (a lease per node); a replica may own several, forwards a
    request about a call on another's PBX to that replica, and takes over a dead owner's PBXes."""

    node: Identifier | None = None  # the PBX this replica serves: the lease's name
    nodes: list[ClusterNode] = Field(default_factory=list)  # several PBXes (instead of node)
    replica: Identifier  # this process, unique among the node's replicas
    # Where the others forward requests while this one is active: its own API base URL.
    url: Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.:\[\]-]{1,200}$")]
    lease_ttl_s: float = Field(3.0, ge=0.5, le=60.0)  # a dead active is replaced after this
    # Several PBXes: a PBX taken over from its preferred replica is handed back to it once that
    # replica has been alive, and the owner has owned it, this many lease periods each, and the
    # PBX has nothing in flight; if it is not quiet within failback_max_wait_s it stays put.
    failback: bool = True
    failback_settle_ttls: float = Field(3.0, ge=1.0, le=1000.0)
    failback_max_wait_s: float = Field(600.0, ge=0.0, le=86400.0)

    @model_validator(mode="after")
    def _node_or_nodes(self) -> ClusterSettings:
        if (self.node is None) == (not self.nodes):
            raise ValueError("cluster: set either node (one PBX) or [[cluster.nodes]], not both")
        for attr in ("name", "api_port", "agi_port"):
            seen = [getattr(n, attr) for n in self.nodes if getattr(n, attr) is not None]
            dupes = sorted({str(x) for x in seen if seen.count(x) > 1})
            if dupes:
                raise ValueError(f"cluster.nodes: duplicate {attr}: {', '.join(dupes)}")
        return self


class StoreSettings(_Section):
    """Where records live: the SQLite file ``[bridge].store_path`` (the default), or with
    ``dsn`` (or ``dsn_file``, or ``HOTLINE_BRIDGE_STORE__DSN``) a PostgreSQL database shared by
    several replicas, e.g. ``postgresql://bridge:secret@127.0.0.1:5432/hotline``."""

    dsn: SecretStr | None = None

    @field_validator("dsn")
    @classmethod
    def _postgres(cls, dsn: SecretStr | None) -> SecretStr | None:
        if dsn is not None and not dsn.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("dsn must be a postgresql:// URL")
        return dsn


class UnitSettings(_Section):
    """Handling units (承办单位), their time limits and the working-day calendar: data files
    (default: those shipped in the package), and how often time limits are checked."""

    directory_path: Path | None = None
    limits_path: Path | None = None
    calendar_path: Path | None = None
    scan_interval_s: float = Field(60.0, ge=0, le=3600)  # 0: no automatic supervision scan


# A dial string with the citizen's number in it: only digits can be substituted (see followups).
FollowUpDial = Annotated[
    str, Field(pattern=r"^(PJSIP|Local)/[A-Za-z0-9_.@+*#-]*\{number\}[A-Za-z0-9_.@+*#-]*$")
]


class FollowUpSettings(_Section):
    """Follow-up calls (回访) after a matter is closed: who is called, when, how often.

    ``dial`` is the dial string with ``{number}`` where the citizen's callback number goes (e.g.
    ``PJSIP/{number}@carrier-out``); without it there are no automated calls, only the agents'
    task list. ``prompt`` is the sound played before reading the key (1 satisfied, 2 not).
    """

    dial: FollowUpDial | None = None
    caller_id: DialNumber | None = None  # default: this site's number
    prompt: Annotated[str, Field(pattern=r"^[a-z0-9_/-]{1,60}(&[a-z0-9_/-]{1,60}){0,7}$")] = "beep"
    delay_after_close_s: float = Field(3600.0, ge=0, le=30 * 86_400)
    attempts: int = Field(2, ge=1, le=5)
    retry_after_s: float = Field(3600.0, ge=1, le=7 * 86_400)
    ring_timeout_s: int = Field(30, ge=5, le=120)
    scan_interval_s: float = Field(60.0, ge=0, le=3600)  # 0: no automatic calls
    window_days: int = Field(30, ge=1, le=365)  # matters closed longer ago are not called back
    max_calls_at_once: int = Field(5, ge=1, le=50)


class OverflowSettings(_Section):
    """Overflow to remote seats (远程话务座席): new citizen calls go to a remote seat group while
    the citizens' queue is short of seats, and come back to it once the queue recovers.

    Start when ``waiting >= start_waiting`` with no agent free, or when the oldest caller has
    waited ``start_oldest_wait_s``; stop only after ``waiting <= stop_waiting`` and the oldest wait
    ``<= stop_oldest_wait_s`` held for ``stop_hold_s`` (hysteresis: the stop thresholds are below
    the start ones). The PBX overflows only while the bridge keeps refreshing its lease
    (``lease_s``): a dead bridge lets overflow lapse back to the local queue by itself.
    """

    enabled: bool = False
    queue: Identifier | None = None  # default: [bridge].return_queue (the citizens' queue)
    dial: DialString | None = None  # the remote seat group, e.g. PJSIP/12345@remote-seats
    ring_timeout_s: int = Field(20, ge=1, le=120)  # then the citizen falls back to the queue
    start_waiting: int = Field(5, ge=1, le=10_000)
    start_oldest_wait_s: float = Field(60.0, gt=0, le=3600)
    stop_waiting: int = Field(1, ge=0, le=10_000)
    stop_oldest_wait_s: float = Field(20.0, ge=0, le=3600)
    stop_hold_s: float = Field(60.0, ge=0, le=3600)
    poll_interval_s: float = Field(2.0, ge=0.2, le=60)
    lease_s: float = Field(15.0, ge=1, le=600)

    @model_validator(mode="after")
    def _consistent(self) -> OverflowSettings:
        problems = []
        if self.stop_waiting >= self.start_waiting:
            problems.append("stop_waiting must be below start_waiting")
        if self.stop_oldest_wait_s >= self.start_oldest_wait_s:
            problems.append("stop_oldest_wait_s must be below start_oldest_wait_s")
        if self.lease_s < 2 * self.poll_interval_s:
            problems.append("lease_s must be at least 2 x poll_interval_s (one lost poll)")
        if self.enabled and self.dial is None:
            problems.append("dial is required when overflow is enabled")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ReportSettings(_Section):
    """The quarterly joint analysis report (``hotline-bridge report``, ``/v1/reports``)."""

    # Where reports are written, one folder per quarter; default: ``reports/`` beside the store.
    dir: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_BRIDGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    ami: AmiSettings
    http: HttpSettings = HttpSettings()
    ops: OpsSettings = OpsSettings()
    limits: LimitSettings = LimitSettings()
    agi: AgiSettings = AgiSettings()
    bridge: BridgeSettings
    agents: list[AgentSettings] = Field(default_factory=list)
    api_clients: list[ApiClientSettings] = Field(default_factory=list)
    partner: PartnerSettings | None = None
    targets: dict[Identifier, TargetSettings] = Field(default_factory=dict)
    phone_keys: list[PhoneKeySettings] = Field(default_factory=list)
    duty_lines: DutyLineSettings = DutyLineSettings()
    notices: NoticeSettings = NoticeSettings()
    reports: ReportSettings = ReportSettings()
    units: UnitSettings = UnitSettings()
    store: StoreSettings = StoreSettings()
    follow_up: FollowUpSettings = FollowUpSettings()
    overflow: OverflowSettings = OverflowSettings()
    cluster: ClusterSettings | None = None  # None: one bridge, no standby
    log_format: Annotated[str, Field(pattern=r"^(json|console|auto)$")] = "auto"
    log_level: Annotated[str, Field(pattern=r"^(debug|info|warning|error)$")] = "info"
    # The event loop `serve` runs on: asyncio's own, or uvloop (libuv; the `fast` extra), which
    # spends less CPU per socket read and write. Opt-in.
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    # agent() is on every hotkey press: an index, not a scan of a 200-seat list. Kept with the
    # list it indexes, so a model_copy with other agents (a new list) builds its own.
    _agent_index: tuple[list[AgentSettings], dict[str, AgentSettings]] | None = PrivateAttr(
        default=None
    )

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, agents: list[AgentSettings]) -> list[AgentSettings]:
        for attr in ("id", "endpoint"):
            seen = [getattr(a, attr) for a in agents]
            dupes = sorted({x for x in seen if seen.count(x) > 1})
            if dupes:
                raise ValueError(f"duplicate agent {attr}: {', '.join(dupes)}")
        return agents

    @model_validator(mode="after")
    def _production(self) -> Settings:
        if self.bridge.mode == "sandbox":
            # The exception that must say so, and only where nothing else can reach it.
            off = [f for f, h in (("ami.host", self.ami.host), ("http.host", self.http.host))
                   if not _is_loopback(h)]  # fmt: skip
            if self.cluster is not None:
                off += [f"cluster.nodes[{n.name}].ami_host" for n in self.cluster.nodes
                        if not _is_loopback(n.ami_host)]  # fmt: skip
            if off:
                raise ValueError(f"sandbox mode is for loopback only: {', '.join(off)}")
        if self.bridge.mode == "production":
            problems = production_problems(self)
            if problems:
                raise ValueError(
                    "refused in production mode ([bridge].mode):\n    " + "\n    ".join(problems)
                )
        return self

    @model_validator(mode="after")
    def _one_directory(self) -> Settings:
        if self.bridge.targets_path is not None and self.targets:
            raise ValueError(
                "targets: set either [targets] tables or [bridge].targets_path, not both"
            )
        return self

    @model_validator(mode="after")
    def _phone_keys(self) -> Settings:
        # With a directory file the key targets are checked when the file is read (start-up).
        targets = None if self.bridge.targets_path is not None else set(self.targets)
        problems = phone_key_problems(self.phone_keys, targets)
        if problems:
            raise ValueError("phone_keys: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _unique_tokens(self) -> Settings:
        tokens = [a.token.get_secret_value() for a in self.agents]
        tokens += [c.token.get_secret_value() for c in self.api_clients]
        if len(set(tokens)) != len(tokens):
            raise ValueError("two API users share one token")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then the environment, then the file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @property
    def reports_dir(self) -> Path:
        return self.reports.dir or self.bridge.store_path.parent / "reports"

    def agent(self, agent_id: str) -> AgentSettings | None:
        cached = self._agent_index
        if cached is None or cached[0] is not self.agents:
            cached = self._agent_index = (self.agents, {a.id: a for a in self.agents})
        return cached[1].get(agent_id)


def phone_key_problems(keys: list[PhoneKeySettings], targets: set[str] | None) -> list[str]:
    """What makes a key table unusable, each naming the key. Pure.

    Names are unique; a target must exist; within one place (a call, a three-way room) no key's
    digits may start another's (Asterisk would fire the shorter one first and the longer never).
    """
    problems: list[str] = []
    names = [k.name for k in keys]
    problems += [
        f"duplicate key name {n}" for n in sorted({n for n in names if names.count(n) > 1})
    ]
    for k in keys:
        if targets is not None and k.target is not None and k.target not in targets:
            known = ", ".join(sorted(targets)) or "none"
            problems.append(f"key {k.name}: unknown target {k.target} (targets: {known})")
    for a in keys:
        for b in keys:
            if a is not b and a.in_call == b.in_call and b.digits.startswith(a.digits):
                if a.digits != b.digits or names.index(a.name) < names.index(b.name):
                    problems.append(f"keys {a.name} and {b.name}: {a.digits} starts {b.digits}")
    return problems


# Secrets shipped in this repository's sandbox topologies: never valid in production.
_SANDBOX_PREFIXES = ("sandbox-", "two-site-")
MIN_AMI_SECRET = 16


def production_problems(s: Settings) -> list[str]:
    """What production mode refuses, each naming its field. Pure."""
    problems: list[str] = []
    secrets: list[tuple[str, str]] = [("ami.secret", s.ami.secret.get_secret_value())]
    secrets += [(f"agents[{a.id}].token", a.token.get_secret_value()) for a in s.agents]
    secrets += [(f"api_clients[{c.id}].token", c.token.get_secret_value()) for c in s.api_clients]
    if s.partner is not None:
        secrets.append(("partner.secret", s.partner.secret.get_secret_value()))
        secrets += [
            (f"partner.accept_keys.{k}", v.get_secret_value())
            for k, v in s.partner.accept_keys.items()
        ]
    if s.agi.key is not None:
        secrets.append(("agi.key", s.agi.key.get_secret_value()))
    elif s.agi.enabled:
        problems.append("agi.key: required while agi is enabled (FastAGI has no auth of its own)")
    for where, value in secrets:
        if value.startswith(_SANDBOX_PREFIXES):
            problems.append(f"{where}: a sandbox value; set a real secret (or a *_file)")
    if len(s.ami.secret.get_secret_value()) < MIN_AMI_SECRET:
        problems.append(f"ami.secret: shorter than {MIN_AMI_SECRET} characters")
    if not _is_loopback(s.http.host) and not s.http.tls:
        problems.append(
            f"http.host: {s.http.host} is off loopback without TLS (set http.tls_cert_file "
            "and http.tls_key_file)"
        )
    if s.http.public_url.startswith("http://") and not _url_on_loopback(s.http.public_url):
        problems.append("http.public_url: plain http:// off loopback; use https://")
    if (
        s.partner is not None
        and s.partner.base_url.startswith("http://")
        and not _url_on_loopback(s.partner.base_url)
    ):
        problems.append("partner.base_url: plain http:// off loopback; use https://")
    if (
        s.cluster is not None
        and s.cluster.url.startswith("http://")
        and not _url_on_loopback(s.cluster.url)
    ):
        # A standby forwards agents' requests, tokens and cookies included, to this URL.
        problems.append("cluster.url: plain http:// off loopback; use https://")
    return problems


def _url_on_loopback(url: str) -> bool:
    host = re.sub(r"^[a-z]+://", "", url).split("/", 1)[0]
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    return _is_loopback(host.strip("[]"))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the field."""


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from ``config_path`` (or ``$HOTLINE_BRIDGE_CONFIG``) and the environment."""
    if config_path is None and (env_path := os.environ.get(CONFIG_ENV)):
        config_path = Path(env_path)
    settings_cls: type[Settings] = Settings
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError(f"config file not found: {config_path}")
        # A per-call subclass carries the file path, so loading never mutates global state.
        settings_cls = type(
            "Settings",
            (Settings,),
            {"model_config": {**Settings.model_config, "toml_file": config_path}},
        )
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(root)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)
