"""What a run costs, from the two sources that know: the API (the instance's age x its $/h) and the supervisor
(its own accounting, `cost_so_far` in heartbeat.json, which the bucket keeps after the instance is gone).

Vast bills the disk per GB-month from creation and the GPU while running. A running instance's `dph_total`
already includes its disk (the search's `$/h` does too), so the storage share is split out for the reader,
never added a second time. A dead supervisor's heartbeat shows a frozen figure: while the instance lives,
the API's estimate is the one to believe.
"""

from __future__ import annotations

from dataclasses import dataclass

from vastkit.records import Instance

HOURS_PER_MONTH = 730.0  # Vast prices storage per GB and month of 730 hours


def storage_per_hour(instance: Instance) -> float | None:
    """The disk's share of `dph_total` in $/h (`storage_cost` is $/GB/month); None when the row lacks it."""
    try:
        per_gb_month = float(instance.raw.get("storage_cost"))
    except (TypeError, ValueError):
        return None
    if instance.disk_space is None:
        return None
    return per_gb_month * float(instance.disk_space) / HOURS_PER_MONTH


@dataclass(frozen=True)
class InstanceCost:
    """One instance's rate and what it has cost so far (an upper bound: the GPU is billed from `running`)."""

    age_s: float | None
    dph_total: float | None  # GPU plus disk
    storage_dph: float | None  # the disk's share of dph_total

    @property
    def estimate(self) -> float | None:
        if self.age_s is None or not self.dph_total:
            return None
        return self.dph_total * self.age_s / 3600.0

    @property
    def gpu_dph(self) -> float | None:
        if self.dph_total is None:
            return None
        return max(0.0, self.dph_total - (self.storage_dph or 0.0))


def instance_cost(instance: Instance, now: float) -> InstanceCost:
    age = max(0.0, now - instance.start_date) if instance.start_date else None
    return InstanceCost(age_s=age, dph_total=instance.dph_total, storage_dph=storage_per_hour(instance))


def supervisor_cost(heartbeat: dict | None) -> float | None:
    """The supervisor's (or, once it ended the billing, the agent's) own figure: $/h x time since creation."""
    value = (heartbeat or {}).get("cost_so_far")
    return float(value) if isinstance(value, (int, float)) else None


def money(value: float | None) -> str:
    """`$0.0123` below a dollar (tiny test runs), `$12.34` above; `-` when unknown."""
    if value is None:
        return "-"
    return f"${value:.4f}" if abs(value) < 1 else f"${value:.2f}"
