"""A scripted, in-memory Vast API for the failover's unit tests: no HTTP, no SSH, no real waiting.

Each create takes the next entry of `FakeVast.script` (default "ok"):
- "ok": pending for `boot_polls` reads of the instance, then running with an SSH address;
- "stuck": pending for ever; "failed": reads `exited`; "stopped": reads outbid-stopped;
- "offer_gone": the create answers 410 no_such_ask;
- "ambiguous_made": the instance is made, but the create answers a timeout (status None);
- "ambiguous_late": the same, but the instance is only listed after `late_lists` listings;
- "ambiguous_none": the create answers 502 and nothing was made;
- "vanish": running, then gone (torn down by someone) at the first read.
Time is a `FakeClock` that `sleep` advances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vastkit.errors import VastAPIError
from vastkit.records import CreatedInstance, Instance, Offer


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(seconds, 0.01)


@dataclass
class Settings:
    url: str = "http://fake-vast.invalid"


def offer(offer_id: int, machine_id: int, dph: float = 0.4) -> Offer:
    return Offer.from_api({"id": offer_id, "machine_id": machine_id, "gpu_name": "RTX 4090", "num_gpus": 1,
                           "dph_total": dph})


@dataclass
class FakeVast:
    clock: FakeClock = field(default_factory=FakeClock)
    script: list = field(default_factory=list)
    boot_polls: int = 2
    late_lists: int = 3
    settings: Settings = field(default_factory=Settings)
    rows: dict = field(default_factory=dict)
    creates: list = field(default_factory=list)  # (offer_id, label, env)
    destroys: list = field(default_factory=list)
    get_errors: list = field(default_factory=list)  # exceptions the next get_instance calls raise
    destroy_fails: bool = False
    next_id: int = 500
    on_get: object = None  # callable(instance_id) run on each get_instance (to inject signals, etc.)
    _hidden: dict = field(default_factory=dict)  # id -> listings left before it is listed
    _polls: dict = field(default_factory=dict)

    # -- what tests set up ------------------------------------------------------------------------------

    def add_row(self, label: str, *, instance_id: int | None = None, status: str = "running", env=None,
                intended: str = "running", start_date: float | None = None) -> int:
        if instance_id is None:
            instance_id = self.next_id
            self.next_id += 1
        self.rows[instance_id] = {
            "id": instance_id, "label": label, "machine_id": 9000 + instance_id, "actual_status": status,
            "intended_status": intended, "cur_state": "running" if intended == "running" else "stopped",
            "status_msg": "", "ssh_host": "127.0.0.1", "ssh_port": 2200, "public_ipaddr": "127.0.0.1",
            "ports": {"22/tcp": [{"HostPort": "2200"}]}, "extra_env": [[k, v] for k, v in (env or {}).items()],
            "start_date": start_date if start_date is not None else self.clock.now(), "gpu_name": "RTX 4090",
            "num_gpus": 1, "dph_total": 0.4, "_mode": "ok",
        }
        self._polls[instance_id] = 99
        return instance_id

    def alive(self, label: str | None = None) -> list[int]:
        return sorted(i for i, r in self.rows.items() if label is None or r["label"] == label)

    # -- the API the provisioner calls ----------------------------------------------------------------------

    def create_instance(self, offer_id, *, image, disk_gb, label, env, onstart, bid_price, runtype):
        mode = self.script.pop(0) if self.script else "ok"
        self.creates.append((offer_id, label, dict(env)))
        if mode == "offer_gone":
            raise VastAPIError(410, "no_such_ask", f"error 410/3603: no_such_ask offer {offer_id}")
        if mode == "ambiguous_none":
            raise VastAPIError(502, None, "Bad Gateway")
        instance_id = self.add_row(label, status="loading", env=env)
        row = self.rows[instance_id]
        row["_mode"] = mode
        row["machine_id"] = 7000 + offer_id
        self._polls[instance_id] = 0
        if mode == "ambiguous_made":
            raise VastAPIError(None, "ReadTimeout", "read timed out")
        if mode == "ambiguous_late":
            self._hidden[instance_id] = self.late_lists
            raise VastAPIError(None, "ReadTimeout", "read timed out")
        return CreatedInstance(id=instance_id)

    def _view(self, instance_id: int) -> dict | None:
        row = self.rows.get(instance_id)
        if row is None:
            return None
        mode = row["_mode"]
        polls = self._polls.get(instance_id, 0)
        if mode == "vanish" and polls >= 1:
            self.rows.pop(instance_id)
            return None
        if mode in ("ok", "ambiguous_made", "ambiguous_late", "vanish") and polls >= self.boot_polls:
            row["actual_status"] = "running"
        elif mode == "failed" and polls >= 1:
            row["actual_status"] = "exited"
        elif mode == "stopped" and polls >= 1:
            row.update(actual_status="stopped", intended_status="stopped", cur_state="stopped")
        return row

    def get_instance(self, instance_id: int) -> Instance | None:
        if callable(self.on_get):
            self.on_get(instance_id)
        if self.get_errors:
            raise self.get_errors.pop(0)
        self._polls[instance_id] = self._polls.get(instance_id, 0) + 1
        row = self._view(instance_id)
        return Instance.from_api(row) if row else None

    def list_instances(self, *, label=None, label_prefix=None, statuses=None) -> list[Instance]:
        shown = []
        for instance_id in sorted(self.rows):
            if self._hidden.get(instance_id, 0) > 0:
                self._hidden[instance_id] -= 1
                continue
            row = self._view(instance_id)
            if row is None or (label is not None and row["label"] != label):
                continue
            shown.append(Instance.from_api(row))
        return shown

    def destroy_instance(self, instance_id: int) -> bool:
        self.destroys.append(instance_id)
        if self.destroy_fails:
            raise VastAPIError(500, None, "destroy broke")
        return self.rows.pop(instance_id, None) is not None

    def start_instance(self, instance_id: int) -> None:
        row = self.rows[instance_id]
        row.update(intended_status="running", cur_state="running", actual_status="loading", _mode="ok")
        self._polls[instance_id] = 0
