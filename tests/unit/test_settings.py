"""Settings: strict (a misspelt key is an error naming it), production by default (sandbox
shortcuts refused, each naming its field), secrets readable from owner-only files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hotline_bridge.config.settings import ConfigError, load_settings, production_problems

STRONG = "a-real-ami-secret-0123456789"
PROD: dict[str, Any] = {
    "ami": {"host": "10.0.0.5", "username": "hotline-bridge", "secret": STRONG},
    "http": {"host": "127.0.0.1", "public_url": "https://hotline.example.cn"},
    "bridge": {"return_queue": "hotline-12345"},
    "agi": {"key": "a-real-agi-key-0123456789"},
    "agents": [{"id": "1001", "endpoint": "agent1001", "token": "t0k3n-of-agent-1001-xyz"}],
}


def with_(base: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, fields in sections.items():
        out[name] = {**out.get(name, {}), **fields}
    return out


def test_production_is_the_default_and_a_clean_config_loads() -> None:
    s = load_settings(**PROD)
    assert s.bridge.mode == "production" and production_problems(s) == []


def test_a_misspelt_key_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[ami]\nhost = "10.0.0.5"\nusername = "hb"\nsecret = "{STRONG}"\n'
        '[bridge]\nreturn_queue = "q"\nring_timout_s = 90\n'
        '[http]\npublic_url = "https://x.example.cn"\n[agi]\nenabled = false\n'
    )
    with pytest.raises(ConfigError, match=r"bridge\.ring_timout_s: Extra inputs are not permitted"):
        load_settings(config)
    with pytest.raises(ConfigError, match=r"pbx: Extra inputs"):
        load_settings(**PROD, pbx={"site": "12345"})  # the sandbox PBX's own data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ami": {"secret": "sandbox-ami-secret-but-long"}}, "ami.secret: a sandbox value"),
        ({"ami": {"secret": "short-secret"}}, "ami.secret: shorter than 16"),
        ({"http": {"host": "0.0.0.0"}}, "http.host: 0.0.0.0 is off loopback without TLS"),  # noqa: S104
        ({"http": {"public_url": "http://10.0.0.9:8345"}}, "http.public_url: plain http://"),
    ],
)
def test_production_refuses_sandbox_shortcuts_naming_the_field(
    change: dict[str, dict[str, Any]], field: str
) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(**with_(PROD, **change))
    # In sandbox mode (loopback only) the same shortcut is allowed, except off loopback.
    sandbox = with_(PROD, bridge={"mode": "sandbox"})
    sandbox = with_(sandbox, ami={**sandbox["ami"], "host": "127.0.0.1"}, **{
        k: v for k, v in change.items() if k != "ami"})  # fmt: skip
    if "ami" in change:
        sandbox = with_(sandbox, ami=change["ami"])
    if sandbox["http"].get("host") == "0.0.0.0":  # noqa: S104 - the value under test
        with pytest.raises(ConfigError, match=r"loopback only: http\.host"):
            load_settings(**sandbox)
    else:
        load_settings(**sandbox)


def test_production_refuses_sandbox_tokens_and_plain_http_partners() -> None:
    cfg = with_(PROD)
    cfg["agents"] = [{"id": "1001", "endpoint": "agent1001", "token": "sandbox-token-agent-1001"}]
    cfg["partner"] = {
        "site": "110",
        "base_url": "http://110.example.cn:8345",
        "key_id": "k-12345-to-110",
        "secret": "two-site-sandbox-secret-12345-to-110-0001",
        "accept_keys": {"k-110-to-12345": "x" * 40},
    }
    with pytest.raises(ConfigError) as err:
        load_settings(**cfg)
    text = str(err.value)
    assert "agents[1001].token: a sandbox value" in text
    assert "partner.secret: a sandbox value" in text
    assert "partner.base_url: plain http://" in text


def test_secrets_come_from_owner_only_files(tmp_path: Path) -> None:
    secret = tmp_path / "ami.secret"
    secret.write_text(STRONG + "\n")
    os.chmod(secret, 0o600)
    cfg = with_(PROD)
    cfg["ami"] = {k: v for k, v in cfg["ami"].items() if k != "secret"} | {"secret_file": secret}
    assert load_settings(**cfg).ami.secret.get_secret_value() == STRONG
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match=r"ami.*secret_file.*readable by others"):
        load_settings(**cfg)
    both = with_(cfg, ami={"secret": STRONG})
    with pytest.raises(ConfigError, match="secret or secret_file, not both"):
        load_settings(**both)


def test_the_secret_file_can_be_named_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "supervisor.token"
    token.write_text("a-supervisor-token-from-a-file")
    os.chmod(token, 0o400)
    monkeypatch.setenv("HOTLINE_BRIDGE_AMI__SECRET_FILE", str(token))
    cfg = with_(PROD)
    cfg["ami"] = {k: v for k, v in cfg["ami"].items() if k != "secret"}
    assert load_settings(**cfg).ami.secret.get_secret_value() == "a-supervisor-token-from-a-file"


def test_tls_files_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file go together"):
        load_settings(**with_(PROD, http={"tls_cert_file": cert}))
    s = load_settings(
        **with_(PROD, http={"host": "0.0.0.0", "tls_cert_file": cert, "tls_key_file": cert})  # noqa: S104
    )
    assert s.http.tls


def test_production_requires_the_agi_key_while_the_hooks_are_on() -> None:
    cfg = {k: v for k, v in PROD.items() if k != "agi"}
    with pytest.raises(ConfigError, match=r"agi\.key: required"):
        load_settings(**cfg)
    assert load_settings(**cfg, agi={"enabled": False}).agi.key is None
    with pytest.raises(ConfigError, match=r"agi\.key: a sandbox value"):
        load_settings(**cfg, agi={"key": "sandbox-agi-key-12345-0001"})


def test_the_store_is_sqlite_by_default_and_postgres_by_a_dsn_kept_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(**PROD).store.dsn is None  # SQLite, [bridge].store_path
    dsn = "postgresql://bridge:pw-0123456789@127.0.0.1:5432/hotline"
    s = load_settings(**with_(PROD, store={"dsn": dsn}))
    assert s.store.dsn is not None and s.store.dsn.get_secret_value() == dsn
    assert "pw-0123456789" not in repr(s)  # the password never reaches a log line
    secret = tmp_path / "store.dsn"
    secret.write_text(dsn + "\n")
    os.chmod(secret, 0o600)
    from_file = load_settings(**with_(PROD, store={"dsn_file": str(secret)}))
    assert from_file.store.dsn == s.store.dsn
    monkeypatch.setenv("HOTLINE_BRIDGE_STORE__DSN", dsn)
    assert load_settings(**PROD).store.dsn == s.store.dsn
    monkeypatch.delenv("HOTLINE_BRIDGE_STORE__DSN")
    with pytest.raises(ConfigError, match="postgresql://"):
        load_settings(**with_(PROD, store={"dsn": "mysql://x@127.0.0.1/db"}))


def test_production_refuses_a_plain_http_replica_url_off_loopback() -> None:
    cluster = {"node": "pbx-1", "replica": "a", "url": "http://10.0.0.11:8345"}
    with pytest.raises(ConfigError, match=r"cluster\.url: plain http://"):
        load_settings(**PROD, cluster=cluster)
    s = load_settings(**PROD, cluster={**cluster, "url": "https://10.0.0.11:8345"})
    assert s.cluster is not None and s.cluster.lease_ttl_s == 3.0


def test_the_event_loop_is_asyncio_unless_uvloop_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (uvloop itself is not imported here: it keeps the socket class it finds at import, and
    # this directory's guard replaces that class; tests/component/test_ami_client runs it.)
    from hotline_bridge.runtime.cli import loop_factory

    assert load_settings(**PROD).event_loop == "asyncio"
    assert loop_factory("asyncio") is None
    monkeypatch.setenv("HOTLINE_BRIDGE_EVENT_LOOP", "uvloop")
    assert load_settings(**PROD).event_loop == "uvloop"
    monkeypatch.setenv("HOTLINE_BRIDGE_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError, match="event_loop"):
        load_settings(**PROD)


def test_an_agent_is_found_by_id_and_a_copy_with_other_agents_answers_for_its_own() -> None:
    s = load_settings(**PROD)
    found = s.agent("1001")
    assert found is not None and found.endpoint == "agent1001"
    assert s.agent("1002") is None and s.agent("1001") is found
    other = s.model_copy(
        update={"agents": [s.agents[0].model_copy(update={"id": "1002", "endpoint": "agent1002"})]}
    )
    assert other.agent("1001") is None
    moved = other.agent("1002")
    assert moved is not None and moved.endpoint == "agent1002"
    assert s.agent("1001") is found  # the original keeps its own
