"""Typed records at the API boundary: what callers read instead of raw JSON rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

# actual_status values, as SkyPilot groups them: pending ones may still reach running, failed ones never will.
PENDING_STATUSES = frozenset({None, "created", "loading", "scheduling", "restarting", "rebooting"})
RUNNING_STATUS = "running"
STOPPED_STATUSES = frozenset({"stopped", "frozen"})
FAILED_STATUSES = frozenset({"exited", "offline", "unknown"})
# The create-time env entries this project sets to recognise its own instances (`VASTKIT_OWNER`, the create
# token `VASTKIT_CREATE`): kept from `extra_env`, which is otherwise dropped because it may hold user values.
TAG_PREFIX = "VASTKIT_"


def _tags(extra_env: Any) -> dict[str, str]:
    """The `VASTKIT_*` entries of `extra_env`: `[[k, v], ...]` on the wire, `{k: v}` after the CLI."""
    pairs = extra_env.items() if isinstance(extra_env, dict) else extra_env if isinstance(extra_env, list) else []
    tags = {}
    for pair in pairs:
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and str(pair[0]).startswith(TAG_PREFIX):
            tags[str(pair[0])] = str(pair[1])
    return tags


def _num(value: Any, cast=float):
    try:
        return cast(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Offer:
    """One marketplace offer (`search offers`)."""

    id: int
    machine_id: int | None
    gpu_name: str
    num_gpus: int
    dph_total: float
    reliability: float | None
    disk_space: float | None
    gpu_ram: float | None
    cuda_max_good: float | None
    geolocation: str | None
    direct_port_count: int | None
    inet_down: float | None
    min_bid: float | None
    verified: bool | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, row: dict) -> Offer:
        return cls(
            id=int(row["id"]),
            machine_id=_num(row.get("machine_id"), int),
            gpu_name=str(row.get("gpu_name") or ""),
            num_gpus=_num(row.get("num_gpus"), int) or 0,
            dph_total=_num(row.get("dph_total")) or 0.0,
            reliability=_num(row.get("reliability2", row.get("reliability"))),
            disk_space=_num(row.get("disk_space")),
            gpu_ram=_num(row.get("gpu_ram")),
            cuda_max_good=_num(row.get("cuda_max_good")),
            geolocation=row.get("geolocation"),
            direct_port_count=_num(row.get("direct_port_count"), int),
            inet_down=_num(row.get("inet_down")),
            min_bid=_num(row.get("min_bid")),
            verified=row.get("verified"),
            raw=row,
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("raw")
        return data


@dataclass(frozen=True)
class Instance:
    """One rented instance (`show instance(s)`). `extra_env` is left out: it may carry values users passed."""

    id: int
    label: str | None
    machine_id: int | None
    actual_status: str | None
    intended_status: str | None
    cur_state: str | None
    status_msg: str | None
    ssh_host: str | None
    ssh_port: int | None
    public_ipaddr: str | None
    direct_ssh_port: int | None
    gpu_name: str | None
    num_gpus: int | None
    dph_total: float | None
    disk_space: float | None
    image: str | None
    start_date: float | None
    is_bid: bool
    gpu_util: float | None = None
    tags: dict = field(default_factory=dict, compare=False)
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    next_state: str | None = None
    # The SSH address a login actually worked on (`with_ssh`); `to_dict()["ssh"]` then names it.
    ssh_reached: tuple | None = field(default=None, compare=False)

    @classmethod
    def from_api(cls, row: dict) -> Instance:
        ports = row.get("ports") or {}
        direct = (ports.get("22/tcp") or [{}])[0] if isinstance(ports, dict) else {}
        public_ip = (row.get("public_ipaddr") or "").strip() or None
        return cls(
            id=int(row["id"]),
            label=row.get("label"),
            machine_id=_num(row.get("machine_id"), int),
            actual_status=row.get("actual_status"),
            intended_status=row.get("intended_status"),
            cur_state=row.get("cur_state"),
            status_msg=(row.get("status_msg") or "").strip() or None,
            ssh_host=row.get("ssh_host"),
            ssh_port=_num(row.get("ssh_port"), int),
            public_ipaddr=public_ip,
            direct_ssh_port=_num((direct or {}).get("HostPort"), int),
            gpu_name=row.get("gpu_name"),
            num_gpus=_num(row.get("num_gpus"), int),
            dph_total=_num(row.get("dph_total")),
            disk_space=_num(row.get("disk_space")),
            image=row.get("image_uuid"),
            start_date=_num(row.get("start_date")),
            is_bid=bool(row.get("is_bid")),
            gpu_util=_num(row.get("gpu_util")),
            tags=_tags(row.get("extra_env")),
            raw={k: v for k, v in row.items() if k not in ("extra_env", "onstart", "jupyter_token")},
            next_state=row.get("next_state"),
        )

    @property
    def is_running(self) -> bool:
        return self.actual_status == RUNNING_STATUS

    @property
    def is_pending(self) -> bool:
        return self.actual_status in PENDING_STATUSES

    @property
    def is_failed(self) -> bool:
        return self.actual_status in FAILED_STATUSES

    @property
    def is_stopped(self) -> bool:
        return self.actual_status in STOPPED_STATUSES or self.intended_status == "stopped"

    @property
    def is_outbid(self) -> bool:
        """Vast's signal for an interruptible that lost its bid (a user's stop reads the same): stopped, meant
        to stay stopped, and headed nowhere else."""
        return self.cur_state == self.intended_status == self.next_state == "stopped"

    def ssh_addresses(self, prefer_direct: bool = True) -> list[tuple[str, int]]:
        """Every (host, port) to try, best first: the direct port when the machine has one (faster, but
        blocked on some hosts), then Vast's proxy (works everywhere)."""
        direct = (self.public_ipaddr, self.direct_ssh_port) if self.public_ipaddr and self.direct_ssh_port else None
        proxy = (self.ssh_host, self.ssh_port) if self.ssh_host and self.ssh_port else None
        ordered = [direct, proxy] if prefer_direct else [proxy, direct]
        return list(dict.fromkeys(a for a in ordered if a is not None))

    def ssh_address(self, prefer_direct: bool = True) -> tuple[str, int] | None:
        """(host, port) to SSH to: the one a login worked on, else the first of `ssh_addresses`."""
        if self.ssh_reached is not None:
            return self.ssh_reached
        addresses = self.ssh_addresses(prefer_direct)
        return addresses[0] if addresses else None

    def with_ssh(self, host: str, port: int) -> Instance:
        """This record, naming (host, port) as its SSH address: the one a login was seen to work on."""
        return replace(self, ssh_reached=(host, int(port)))

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("raw")
        data.pop("ssh_reached")
        address = self.ssh_address()
        data["ssh"] = {"host": address[0], "port": address[1], "user": "root"} if address else None
        return data


@dataclass(frozen=True)
class CreatedInstance:
    """What `create instance` returns. `instance_api_key` is the instance-scoped key; kept out of repr."""

    id: int
    instance_api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SshKey:
    id: int
    public_key: str

    @classmethod
    def from_api(cls, row: dict) -> SshKey:
        return cls(id=int(row["id"]), public_key=(row.get("public_key") or row.get("key") or "").strip())
