"""Chooses the Timers implementation from Settings."""

from __future__ import annotations

from shared.settings import Settings
from shared.timers.protocol import Timers


def timers_from_settings(settings: Settings) -> Timers:
    """Cloud Tasks when `HEKATON_TIMERS=cloudtasks`, else tick only (imports the client lazily)."""
    if settings.timers == "cloudtasks":
        from shared.timers.cloudtasks import CloudTasksTimers

        return CloudTasksTimers.from_settings(settings)
    from shared.timers.tick_only import TickOnlyTimers

    return TickOnlyTimers()
