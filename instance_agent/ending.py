"""How a run's billing ends: the decision (a pure function, tested branch by branch) and the API calls that
carry it out until the API confirms them.

Data first, then money: an instance whose final sync failed is stopped (the disk keeps the only copy of the
artifacts; GPU billing ends), never destroyed. A budget reached or a person's Ctrl-C ends GPU billing
whatever `auto_shutdown` says: destroyed with it, stopped without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from run_contract import BUDGET_EXCEEDED, DESTROYED, INTERRUPTED, KEPT, STOPPED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    action: str  # DESTROYED | STOPPED | KEPT
    reason: str


def decide(outcome: str, *, synced: bool | None, auto_shutdown: bool, user_stop: str | None = None) -> Decision:
    """What to do with the instance once the run is over (`outcome` is the run's final state)."""
    end_gpu = DESTROYED if auto_shutdown else STOPPED
    if not synced:
        return Decision(STOPPED, f"run {outcome}, but the final sync to the bucket failed: STOPPED, not destroyed, "
                                 "so the disk keeps the artifacts (GPU billing ended; storage still bills). Fix B2, "
                                 "start the instance and run teardown.yml, which syncs before destroying")
    if user_stop or outcome == INTERRUPTED:
        return Decision(end_gpu, f"stopped by {user_stop or 'a signal to the supervisor'}: synced, "
                                 + ("destroyed" if auto_shutdown else "STOPPED (auto_shutdown=false: disk kept)"))
    if outcome == BUDGET_EXCEEDED:
        return Decision(end_gpu, "budget reached: synced, " + (
            "destroyed" if auto_shutdown else "STOPPED (auto_shutdown=false: disk kept, GPU billing ended)"))
    if auto_shutdown:
        return Decision(DESTROYED, f"run {outcome}: synced, destroyed (auto_shutdown)")
    return Decision(KEPT, f"run {outcome}: synced; auto_shutdown=false keeps the instance RUNNING AND BILLING until "
                          "its budget (max_runtime_hours/max_cost, then stopped) or teardown.yml")


class EndingApi:
    """The two calls an ending needs, each confirmed by reading the instance back (instance-scoped key)."""

    def __init__(self, api_factory: Callable[[], object], instance_id: int):
        self.api_factory = api_factory
        self.instance_id = instance_id

    def destroy_confirmed(self) -> bool:
        api = self.api_factory()
        api.destroy_instance(self.instance_id)
        return api.get_instance(self.instance_id) is None

    def stop_confirmed(self) -> bool:
        api = self.api_factory()
        api.stop_instance(self.instance_id)
        row = api.get_instance(self.instance_id)
        return row is None or row.intended_status == "stopped" or row.actual_status in ("stopped", "exited")


def backoff(attempt: int, cap: float = 60.0) -> float:
    """Seconds before attempt number `attempt + 1`: 2, 4, 8, ... capped."""
    return min(2.0 * 2 ** max(attempt - 1, 0), cap)
