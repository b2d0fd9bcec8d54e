"""Command line: ``serve`` runs the service; ``check-config`` validates settings; ``report``
writes a quarter's joint analysis report from the store; ``phone-keys`` prints the Asterisk
config of the agents' phone keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hotline_bridge import __version__
from hotline_bridge.config.settings import ConfigError, Settings, load_settings
from hotline_bridge.runtime.logs import configure_logging

if TYPE_CHECKING:
    from hotline_bridge.runtime.app import Runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotline-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hotline-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {}
    for name, text in (
        ("serve", "run the bridge"),
        ("check-config", "validate settings"),
        ("report", "write a quarter's joint analysis report (HTML, CSV, charts)"),
        ("phone-keys", "print the PBX side of [[phone_keys]] (features.conf, globals, menu)"),
    ):
        cmd = commands[name] = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--config",
            type=Path,
            help="settings file (TOML); default: $HOTLINE_BRIDGE_CONFIG",
        )
    commands["report"].add_argument("--quarter", required=True, help="e.g. 2026Q4 (local time)")
    commands["report"].add_argument(
        "--out", type=Path, help="output folder; default: [reports].dir/QUARTER"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"hotline-bridge: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        from hotline_bridge.directory.configured import DirectoryError, configured_directory

        try:
            directory = configured_directory(settings).directory
        except DirectoryError as exc:
            print(f"hotline-bridge: {exc}", file=sys.stderr)
            return 2
        print(
            f"configuration ok: site {settings.bridge.site}, {len(settings.agents)} agents, "
            f"targets {', '.join(sorted(directory.targets)) or 'none'}"
        )
        return 0
    if args.command == "report":
        return _report(settings, args.quarter, args.out)
    if args.command == "phone-keys":
        from hotline_bridge.keys.asterisk import asterisk_config

        print(asterisk_config(settings.phone_keys), end="")
        return 0
    configure_logging(settings.log_format, settings.log_level)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            runner.run(_serve(settings))
    except ConfigError as exc:
        print(f"hotline-bridge: {exc}", file=sys.stderr)
        return 2
    return 0


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The ``event_loop`` setting's loop factory (None: asyncio's default loop)."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigError(
            "event_loop = \"uvloop\" needs uvloop (pip install 'hotline-bridge[fast]')"
        ) from None
    return uvloop.new_event_loop


async def _serve(settings: Settings) -> None:
    if settings.cluster is not None and settings.cluster.nodes:
        from hotline_bridge.runtime.cluster import run_cluster

        await run_cluster(settings, _serve_node)
    elif settings.cluster is not None:
        from hotline_bridge.runtime.replica import run_replica

        await run_replica(settings, _serve_alone)
    else:
        await _serve_alone(settings)


async def _serve_alone(settings: Settings) -> None:
    from hotline_bridge.handoffs.recorder import open_recorder
    from hotline_bridge.runtime.app import serve

    with open_recorder(settings) as recorder:
        await serve(settings, recorder)


async def _serve_node(
    settings: Settings,
    node: str,
    stop: asyncio.Event,
    started: Callable[[Runtime], None],
) -> None:
    """One PBX of a cluster replica: its machines apart in the shared store."""
    from hotline_bridge.handoffs.recorder import open_recorder
    from hotline_bridge.runtime.app import serve
    from hotline_bridge.runtime.cluster import node_store

    with open_recorder(settings, node_store(node)) as recorder:
        await serve(settings, recorder, stop=stop, on_started=started)


def _report(settings: Settings, quarter_text: str, out: Path | None) -> int:
    from hotline_bridge.handoffs.recorder import open_recorder
    from hotline_bridge.reports.render import ReportError
    from hotline_bridge.reports.service import Quarter, write_quarter_report

    try:
        quarter = Quarter.parse(quarter_text)
    except ValueError as exc:
        print(f"hotline-bridge: {exc}", file=sys.stderr)
        return 2
    folder = out or settings.reports_dir / quarter.label
    try:
        with open_recorder(settings) as recorder:
            page = write_quarter_report(
                recorder.store,
                recorder.catalog,
                quarter,
                folder,
                site=settings.bridge.site,
                nuisance_categories=frozenset(settings.agi.nuisance_categories),
            )
    except (ConfigError, ReportError) as exc:
        print(f"hotline-bridge: {exc}", file=sys.stderr)
        return 2
    print(f"report for {quarter.label}: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
