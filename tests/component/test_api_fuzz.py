"""Hostile input at scale: requests generated from the bridge's own OpenAPI document.

The real app (``runtime.app.build``: every capability, the real store on a temp file) with the
AMI edge replaced by a recorder, a live call in the model for agent 1001 and a partner link
configured. For every documented operation hypothesis draws path parameters (real ids and junk),
bodies (from the operation's JSON schema, and malformed ones: wrong types, stray fields, deep
nesting, not JSON at all) and credentials (own, another agent's, a supervisor's, none, garbage).
Over 10,000 requests, nothing may answer 5xx but 503, a refused request (4xx) may never put an
action on the AMI wire, every status must be one the document lists for that operation, and every
error body must match the document's ``Error`` schema.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lab.sandbox import bridge_settings

from hotline_bridge.ami.errors import AmiDisconnected
from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.runtime.app import Runtime, build
from hotline_bridge.web.openapi import openapi_document

TOPOLOGY = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
TOKENS = {
    "1001": "Bearer sandbox-token-agent-1001",
    "1002": "Bearer sandbox-token-agent-1002",
    "supervisor": "Bearer sandbox-token-supervisor-1",
}
TOTAL = 10_000
# Requests known to be acceptable, mixed into the generated ones so that every run really
# presses keys and files police orders (the check "no AMI action for a refused request" means
# something only if accepted requests do act).
_KEY = [{"target": "110"}]
VALID: dict[str, list[dict[str, Any]]] = {
    "/v1/agents/{agent}/carry-transfer": _KEY,
    "/v1/agents/{agent}/three-way": _KEY,
    "/v1/calls/{call_id}/carry-transfer": _KEY,
    "/v1/calls/{call_id}/three-way": _KEY,
    "/v1/work-orders": [
        {
            "channel": "web",
            "category": "police.public_order",
            "danger_to_life": True,
            "jurisdiction": "gucheng",
            "citizen_number": "13800138000",
        }
    ],
}
SLOW = {"/v1/reports": 8}  # renders charts: a few examples are enough
PARTNER_ENV = {
    "HOTLINE_BRIDGE_PARTNER__SITE": "110",
    "HOTLINE_BRIDGE_PARTNER__BASE_URL": "http://127.0.0.1:9",
    "HOTLINE_BRIDGE_PARTNER__KEY_ID": "k-12345-to-110",
    "HOTLINE_BRIDGE_PARTNER__SECRET": "fuzz-" + "s" * 40,
    "HOTLINE_BRIDGE_PARTNER__ACCEPT_KEYS": json.dumps({"k-110-to-12345": "fuzz-" + "t" * 40}),
    # Every request must reach its handler: the rate limits are tested elsewhere.
    "HOTLINE_BRIDGE_LIMITS__PER_PRINCIPAL_PER_S": "1000",
    "HOTLINE_BRIDGE_LIMITS__BURST": "10000",
}


class World:
    """The app under fuzz, its event loop, and what went out to the PBX."""

    def __init__(self, tmp: Path) -> None:
        with mock.patch.dict(os.environ, PARTNER_ENV):
            self.settings = bridge_settings(TOPOLOGY)
        self.store = SqliteHandoffStore(tmp / "handoffs.sqlite3")
        recorder = StoreRecorder(
            self.store,
            load_catalog(),
            site=Platform(self.settings.bridge.site),
            public_url=self.settings.http.public_url,
        )
        self.runtime: Runtime = build(self.settings, recorder)
        self.runtime.app.cleanup_ctx.clear()  # no clock, no scans: only requests act
        self.actions: list[str] = []
        self.runtime.ami.send_batch = self._send_batch  # type: ignore[method-assign]
        self.runtime.ami.send = self._send  # type: ignore[method-assign]
        assert self.runtime.actions is not None  # the commands' own session
        self.runtime.actions.send_batch = self._send_batch  # type: ignore[method-assign]
        self.runtime.actions.send = self._send  # type: ignore[method-assign]
        self.loop = asyncio.new_event_loop()

        async def start() -> TestClient[Any, Any]:
            client: TestClient[Any, Any] = TestClient(TestServer(self.runtime.app))
            await client.start_server()
            return client

        self.client = self.loop.run_until_complete(start())
        self.doc = openapi_document(self.runtime.app)
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.ids: dict[str, list[str]] = {k: [] for k in ID_FIELDS.values()}
        self.sent = 0
        self._seeded = 0
        self.seed_call()

    def _send_batch(self, batch: Any, **_: Any) -> list[Any]:
        self.actions.extend(name for name, _ in batch)
        return [self._gone() for _ in batch]

    async def _send(self, name: str, fields: Any = None, **_: Any) -> Any:
        self.actions.append(name)
        raise AmiDisconnected("fuzz: no PBX")

    async def _gone(self) -> Any:
        raise AmiDisconnected("fuzz: no PBX")

    def seed_call(self) -> None:
        """A citizen talking to agent 1001 (a fresh one once a hotkey has claimed the last: the
        PBX hangs up the old one, which settles its handoff and frees the agent). Fed on the
        app's loop: a machine may answer an event with commands."""

        async def feed() -> None:
            self._seed()

        self.loop.run_until_complete(feed())

    def _seed(self) -> None:
        calls = self.runtime.switchboard.calls
        for chan in list(calls.model.channels.values()):
            self.runtime.switchboard.on_event(
                {"Event": "Hangup", "Uniqueid": chan.uniqueid, "Channel": chan.name}
            )
        self._seeded += 2
        n = self._seeded
        for event in (
            {"Event": "Newchannel", "Uniqueid": f"1.{n}", "Channel": f"PJSIP/carrier-{n:08x}"},
            {
                "Event": "Newchannel",
                "Uniqueid": f"1.{n + 1}",
                "Channel": f"PJSIP/agent1001-{n:08x}",
            },
            {"Event": "BridgeEnter", "Uniqueid": f"1.{n}", "BridgeUniqueid": f"b{n}"},
            {"Event": "BridgeEnter", "Uniqueid": f"1.{n + 1}", "BridgeUniqueid": f"b{n}"},
        ):
            calls.on_event(
                {
                    "Linkedid": f"1.{n}",
                    "CallerIDNum": "13800138000",
                    "Channel": event.get("Channel", ""),
                    **event,
                }
            )
        calls.pbx_ready = True

    def call_of(self, agent: str) -> str:
        call = self.runtime.switchboard.calls.model.call_of_agent(agent)
        return call.call_id if call is not None else "1.1"

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, int]:
        before = len(self.actions)

        async def go() -> tuple[int, bytes]:
            resp = await self.client.request(method, path, data=body, headers=headers)
            return resp.status, await resp.read()

        status, raw = self.loop.run_until_complete(go())
        self.sent += 1
        return status, raw, len(self.actions) - before

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()
        self.store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("fuzz"))
    yield w
    w.close()


def operations() -> list[tuple[str, str]]:
    with mock.patch.dict(os.environ, PARTNER_ENV):
        s = bridge_settings(TOPOLOGY)
    doc = openapi_document(build(s, _null_recorder(s)).app)
    return [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops]


def _null_recorder(s: Any) -> StoreRecorder:
    return StoreRecorder(
        mock.MagicMock(), load_catalog(), site=Platform(s.bridge.site), public_url="http://x"
    )


OPS = operations()
# Twice the even share: operations with few distinct inputs run out early (hypothesis stops
# when it has tried them all), the rich ones make up the total.
PER_OP = 2 * -(-TOTAL // len(OPS))


def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for the JSON-schema subset pydantic writes for our request models ($ref,
    anyOf, enum/const, objects with required and optional properties, strings with length and
    pattern, numbers with bounds, arrays, date-times). Mostly valid: the handlers' own checks
    beyond the schema (a target that exists, a call that is live) are what they reach."""
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if kind == "integer":
            return st.integers(min_value=lo, max_value=hi)
        return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", 60)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda v: lo <= len(v) <= hi
            )
        return st.text(min_size=lo, max_size=min(hi, 60))
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {}), defs),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 5), 5),
        )
    if kind == "object" or "properties" in schema:
        required = set(schema.get("required", []))
        props = schema.get("properties", {})
        return st.fixed_dictionaries(
            {k: from_schema(v, defs) for k, v in props.items() if k in required},
            optional={k: from_schema(v, defs) for k, v in props.items() if k not in required},
        )
    return ANY_JSON


def body_schema(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    ref = (
        op.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
        .get("$ref")
    )
    if ref is None:
        return None
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]


JUNK = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and s not in (".", "..")),
    st.sampled_from(["..%2F..", "%00", "x" * 600, "ⅷ", "1.1", "-1", "h-" + "0" * 26]),
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def param_values(world: World) -> dict[str, st.SearchStrategy[str]]:
    known = {
        "agent": st.sampled_from(["1001", "1002", "pool2001"]),
        "call_id": st.sampled_from(
            sorted(world.runtime.switchboard.calls.model.channels) or ["1.1"]
        ),
        "quarter": st.sampled_from(["2026Q3", "2026Q5", "1999Q1"]),
        "unit": st.sampled_from(["gucheng-public-security", "water", "nobody"]),
        "action": st.sampled_from(["accept", "reject", "progress", "complete", "fly"]),
    }
    return {k: st.one_of(v, JUNK) for k, v in known.items()}


ID_FIELDS = {"id": "handoff_id", "handoff_id": "handoff_id", "transfer_id": "transfer_id"}
ID_FIELDS["conference_id"] = "conference_id"


def learn_ids(world: World, raw: bytes) -> None:
    """Ids the fuzz itself created (so later requests reach records that exist)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return
    if isinstance(body, dict):
        for field, name in ID_FIELDS.items():
            value = body.get(field)
            if isinstance(value, str) and value not in world.ids[name]:
                world.ids[name] = [*world.ids[name][-19:], value]


@pytest.mark.parametrize(("method", "path"), OPS, ids=[f"{m} {p}" for m, p in OPS])
def test_generated_requests_never_break_the_contract(world: World, method: str, path: str) -> None:
    doc = world.doc
    op = doc["paths"][path][method.lower()]
    schema = body_schema(doc, op)
    documented = {int(code) for code in op["responses"]}
    error_schema = {**doc["components"]["schemas"]["Error"]}
    names = re.findall(r"{(\w+)}", path)
    params = param_values(world)

    body_strategy = (
        from_schema(schema, doc["components"]["schemas"]) if schema is not None else ANY_JSON
    )

    @settings(
        max_examples=SLOW.get(path, PER_OP),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        # One in four requests to a route with a known-good body is that request, made right
        # (the right agent, its live call, its token); the rest are generated.
        valid = path in VALID and data.draw(st.integers(0, 3), label="valid") == 0
        if valid:
            # Hypothesis never repeats an input it has tried; this makes each good press new.
            data.draw(st.integers(0, 2**20), label="nonce")
        values = {}
        for name in names:
            if valid:
                values[name] = "1001" if name == "agent" else world.call_of("1001")
                continue
            choices = world.ids.get(name) or []
            strategy = params.get(name, JUNK)
            if choices:
                strategy = st.one_of(st.sampled_from(choices), strategy)
            values[name] = data.draw(strategy, label=name)
        url = path.format(**{k: _quote(v) for k, v in values.items()})
        headers = {}
        who = "1001" if valid else data.draw(st.sampled_from([*TOKENS, "none", "garbage"]))
        if who in TOKENS:
            headers["Authorization"] = TOKENS[who]
        elif who == "garbage":
            headers["Authorization"] = data.draw(
                st.sampled_from(
                    ["Bearer", "Basic Zm9vOmJhcg==", "Bearer ÿþ-token", "Bearer " + "a" * 5000]
                )
            )
        body = None
        if method == "POST":
            headers["Content-Type"] = "application/json"
            kind = (
                "valid"
                if valid
                else data.draw(
                    st.sampled_from(["schema", "schema", "schema", "any", "deep", "raw", "gzip"])
                )
            )
            if kind == "valid":
                body = json.dumps(data.draw(st.sampled_from(VALID[path]))).encode()
            elif kind == "schema" and schema is not None:
                body = json.dumps(data.draw(body_strategy, label="body")).encode()
            elif kind == "gzip":
                # Says gzip, is not: aiohttp fails reading it (once answered 500).
                headers["Content-Encoding"] = "gzip"
                body = b'{"target": "110"}'
            elif kind == "deep":
                body = b"[" * 5000 + b"]" * 5000
            elif kind == "raw":
                body = data.draw(st.binary(max_size=200), label="raw")
            else:
                body = json.dumps(data.draw(ANY_JSON, label="json")).encode()
        status, raw, actions = world.request(method, url, body, headers)
        world.statuses[(f"{method} {path}", status)] += 1
        if 200 <= status < 300:
            learn_ids(world, raw)
        assert status < 500 or status == 503, (url, status, raw[:300])
        assert status in documented, (url, status, raw[:300], sorted(documented))
        if status >= 400:
            assert actions == 0, (url, status, world.actions[-actions:])
            if "content" in op["responses"][str(status)]:  # an error, not a degraded answer
                jsonschema.validate(json.loads(raw), error_schema)
        if path.endswith(("carry-transfer", "three-way")) and status == 202:
            world.seed_call()  # the call is claimed now: the next presses get a fresh one

    run()


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def test_the_fuzz_sent_enough_and_reached_the_handlers(world: World) -> None:
    by_status = Counter[int]()
    for (_, status), n in world.statuses.items():
        by_status[status] += n
    print(f"\nfuzz: {world.sent} requests, statuses {dict(sorted(by_status.items()))}")
    assert world.sent >= TOTAL
    # Not everything bounced at the door: some requests did what they asked.
    assert sum(n for s, n in by_status.items() if 200 <= s < 300) >= 100
    assert by_status[401] > 0 and by_status[422] > 0
    assert {"BlindTransfer", "Originate"} & set(world.actions)
