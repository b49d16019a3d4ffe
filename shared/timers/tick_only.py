"""No timer backend: every due time waits for the tick to re-emit it (the default)."""

from __future__ import annotations

from shared.timers.protocol import Scheduled, Timer


class TickOnlyTimers:
    """Schedules nothing: the tick (Cloud Scheduler, once a minute in GCP) resolves every wait."""

    def schedule(self, timer: Timer) -> Scheduled:
        """Nothing to do: the sweep publishes the step once it is due."""
        return Scheduled.TICK_ONLY
