"""Command line: ``hotline-bridge serve`` runs the service; ``check-config`` validates settings."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from hotline_bridge import __version__
from hotline_bridge.config.settings import ConfigError, Settings, load_settings
from hotline_bridge.runtime.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotline-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hotline-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the bridge"), ("check-config", "validate settings")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--config",
            type=Path,
            help="settings file (TOML); default: $HOTLINE_BRIDGE_CONFIG",
        )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"hotline-bridge: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(
            f"configuration ok: site {settings.bridge.site}, {len(settings.agents)} agents, "
            f"targets {', '.join(sorted(settings.targets)) or 'none'}"
        )
        return 0
    configure_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(_serve(settings))
    except ConfigError as exc:
        print(f"hotline-bridge: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(settings: Settings) -> None:
    from hotline_bridge.handoffs.recorder import open_recorder
    from hotline_bridge.runtime.app import serve

    with open_recorder(settings) as recorder:
        await serve(settings, recorder)


if __name__ == "__main__":
    sys.exit(main())
