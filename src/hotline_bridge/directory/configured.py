"""The site's linkage directory as configured: the directory file, or the [targets] tables.

A site names its targets one of two ways: ``[bridge].targets_path`` (a directory file: kinds,
labels, per-jurisdiction desks, hours) or the older ``[targets.<id>]`` tables of the settings
(one desk each). Either way the rest of the bridge sees one :class:`Directory`. Here too the
checks that need both the directory and the settings: every phone key names a target, and every
linked target has a partner link to its site (a record addressed to a platform nobody pushes to
would wait in the outbox forever).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hotline_bridge.config.settings import Settings, phone_key_problems
from hotline_bridge.directory.loader import DirectoryError, load_directory
from hotline_bridge.directory.model import CITY_WIDE, Desk, Directory, Hours, Target, TargetKind


@dataclass(frozen=True, slots=True)
class Configured:
    directory: Directory
    # Sandbox only: linked targets without a partner link, carried by reference instead.
    downgraded: tuple[str, ...] = ()

    @property
    def line_readers(self) -> dict[str, frozenset[str]]:
        """Each plain line's API client id and the targets whose records it may read."""
        readers: dict[str, set[str]] = {}
        for t in self.directory.targets.values():
            if not t.linked and t.api_client:
                readers.setdefault(t.api_client, set()).add(t.id)
        return {client: frozenset(ids) for client, ids in readers.items()}


def configured_directory(settings: Settings) -> Configured:
    """The directory this site routes by. Raises :class:`DirectoryError` naming what is wrong."""
    path = settings.bridge.targets_path
    directory = load_directory(path) if path is not None else _from_tables(settings)
    problems = [
        f"phone_keys: {p}"
        for p in phone_key_problems(settings.phone_keys, set(directory.targets))
        if path is not None
    ]
    linked_site = settings.partner.site if settings.partner is not None else None
    unlinked = sorted(
        t.id for t in directory.targets.values() if t.linked and t.site != linked_site
    )
    downgraded: tuple[str, ...] = ()
    if unlinked and settings.bridge.mode == "production":
        problems += [
            f"targets.{tid}: a linked platform (site {directory.targets[tid].site}) but no "
            "[partner] link to that site: configure one or make it a plain line"
            for tid in unlinked
        ]
    elif unlinked:
        # The sandbox's single PBX has no partner bridge: its records travel by reference only.
        directory = Directory(
            {
                tid: replace(t, kind=TargetKind.LINE, site=None) if tid in unlinked else t
                for tid, t in directory.targets.items()
            }
        )
        downgraded = tuple(unlinked)
    clients = {c.id: c.role for c in settings.api_clients}
    for t in directory.targets.values():
        if t.api_client and clients.get(t.api_client, "line") != "line":
            # A token of another role must not quietly gain a line's reads (or lose its own).
            problems.append(
                f"targets.{t.id}: api_client {t.api_client} is a {clients[t.api_client]}, "
                "not a line"
            )
    if problems:
        raise DirectoryError(problems)
    return Configured(directory, downgraded)


def _from_tables(settings: Settings) -> Directory:
    """The [targets] tables as a directory: one city-wide desk each; the partner's own site key
    (``110`` at a 12345 bridge with a [partner] link to 110) is the linked platform."""
    partner_site = settings.partner.site if settings.partner is not None else None
    return Directory(
        {
            key: Target(
                id=key,
                kind=TargetKind.LINKED if key == partner_site else TargetKind.LINE,
                label_zh=t.label,
                label_en=t.label,
                forwarding_number=t.forwarding_number,
                three_way=True,
                hours=Hours(),
                desks={CITY_WIDE: Desk(t.dial, t.number)},
                site=key if key == partner_site else None,
                ring_timeout_s=t.ring_timeout_s,
            )
            for key, t in settings.targets.items()
        }
    )


def endpoints(directory: Directory) -> list[str]:
    """The PJSIP endpoints the directory's desks are dialled through (``PJSIP/120@desk-120``):
    the call model tells partner legs by them."""
    found = {
        desk.dial.partition("/")[2].rpartition("@")[2]
        for t in directory.targets.values()
        for desk in t.desks.values()
        if desk.dial.startswith("PJSIP/") and "@" in desk.dial
    }
    return sorted(found)


__all__ = ["Configured", "DirectoryError", "configured_directory", "endpoints"]
