"""The run's budget: wall-clock and dollars. Pure functions of elapsed time, so they are tested without waiting."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    max_runtime_hours: float
    max_cost: float | None = None  # USD; None: no cost limit
    dph: float | None = None  # the offer's $/h (dph_total), which is what Vast bills while running

    def cost_so_far(self, elapsed_s: float) -> float | None:
        """Estimated spend of this run: $/h × hours since the supervisor started (None when $/h is unknown)."""
        return None if self.dph is None else round(self.dph * elapsed_s / 3600.0, 6)

    def exceeded(self, elapsed_s: float) -> str | None:
        """Why the run must stop now, or None while it is within budget."""
        if elapsed_s >= self.max_runtime_hours * 3600.0:
            return (f"max_runtime_hours={self.max_runtime_hours:g} exceeded after {elapsed_s:.0f}s; "
                    "raise it with -e max_runtime_hours=<hours>")
        cost = self.cost_so_far(elapsed_s)
        if self.max_cost is not None and cost is not None and cost >= self.max_cost:
            return (f"max_cost=${self.max_cost:g} reached (${cost:.2f} at ${self.dph:g}/h); "
                    "raise it with -e max_cost=<usd>")
        return None
