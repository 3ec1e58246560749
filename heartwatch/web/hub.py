"""What every part of the running server shares: settings, store, clock, and who to tell about changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from heartwatch.clock import Clock, system_clock
from heartwatch.config import Settings
from heartwatch.engine.leader import Leadership
from heartwatch.store.sqlite import PingResult, Store


@dataclass
class Hub:
    settings: Settings
    store: Store
    clock: Clock = system_clock
    #: Called after each stored ping (the scheduler re-reads deadlines; live pages refresh).
    ping_listeners: list[Callable[[PingResult], None]] = field(default_factory=list)
    #: Called after a check is created, changed, archived, paused or resumed through the API (the scheduler
    #: wakes: a deadline may have moved earlier).
    change_listeners: list[Callable[[], None]] = field(default_factory=list)
    #: Held while a whole list of checks is built (/api/v1/checks, /metrics): they are built a slice at a time,
    #: and one at a time, so a ping waits for one slice of one list at most, however many are asked for at once.
    whole_list: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Which process runs the scheduler and the sender (server.py sets it); None in tests of the app alone.
    leadership: Leadership | None = None

    def leader(self) -> dict[str, object]:
        """This process and who leads, for /healthz."""
        lead = self.leadership
        if lead is None:
            return {}
        return {"process": lead.name, "leading": lead.leading, "leader": lead.known_holder}

    def leader_note(self) -> str:
        """The pages' footer line: only where several processes share the database (PostgreSQL)."""
        lead = self.leadership
        if lead is None or not self.store.shared:
            return ""
        if lead.leading:
            return f"This process ({lead.name}) leads: it runs the scheduler and sends the alerts."
        return f"This is {lead.name}; {lead.known_holder or 'no process'} leads (scheduler and alerts)."

    def ping_url(self, uuid: str) -> str:
        return f"{self.settings.public_url}/ping/{uuid}"

    def slug_url(self, slug: str) -> str:
        return f"{self.settings.public_url}/ping/{self.store.ping_key}/{slug}"


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub
