"""What the runtime gives each feature capability's ``install(app, deps)``.

The one contract between the composition root (``runtime.app``) and the capability packages:
a capability is handed its collaborators here, mounts its routes on the app, builds its service,
registers it for PBX feedback through ``pbx`` and returns it. It never reaches for AMI or the
runtime itself (an import-linter contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

from dataclasses import dataclass

from hotline_bridge.calls.service import CallService
from hotline_bridge.catalog.model import Catalog, Platform
from hotline_bridge.config.settings import Settings
from hotline_bridge.core.feedback import PbxPort
from hotline_bridge.directory.model import Directory
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.service import HandoffService
from hotline_bridge.handoffs.store import HandoffStore


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    pbx: PbxPort  # submit functions per capability; event registration
    calls: CallService  # the live call model
    recorder: StoreRecorder  # opens and annotates the records of handoffs on live calls
    handoffs: HandoffService  # the record API's service (work orders, events, reads)
    directory: Directory  # the linkage targets calls are handed to (directory.configured)

    @property
    def store(self) -> HandoffStore:
        return self.recorder.store

    @property
    def catalog(self) -> Catalog:
        return self.recorder.catalog

    @property
    def site(self) -> Platform:
        return Platform(self.settings.bridge.site)
