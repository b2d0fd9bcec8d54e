"""Who is acting: an authenticated agent, supervisor or partner platform (set by the web edge)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an agent (acts on its own calls), a supervisor or a partner platform."""

    id: str
    role: str  # "agent" | "supervisor" | "partner"
    agent_id: str | None = None
