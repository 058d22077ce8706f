"""Persistent emulator state (account, instances, secrets, ssh keys) as one JSON file under the state dir."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STATE_VERSION = 1
FIRST_INSTANCE_ID = 20_000_001  # far from offer ids (10_000_xxx) so a mixed-up id fails loudly


@dataclass
class InstanceRecord:
    """What the emulator remembers about one instance; ``public_row`` in instances.py renders the API view."""

    id: int
    offer_id: int
    api_key: str
    image: str
    disk: float
    label: str | None
    onstart: str | None
    env: dict[str, str]
    runtype: str
    args: list[str] | None
    price: float | None
    start_date: float
    intended_status: str = "running"
    actual_status: str | None = "created"
    status_msg: str = "Created"
    ssh_port: int | None = None
    running_since: float | None = None
    authorized_keys: list[str] = field(default_factory=list)
    attached_keys: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, Any] = field(default_factory=dict)
    runtime_pid: int | None = None
    template_hash_id: str | None = None
    requested_image: str | None = None  # what the create asked for (``image`` is what the host pulled)
    start_error: str | None = None  # why the container can never start (a CUDA the driver lacks): stays created
    proxy_port: int | None = None  # Vast's proxy: ssh_host (127.0.0.2) : proxy_port, forwarded to sshd
    direct_port: int | None = None  # what ports["22/tcp"] shows when it is not sshd's own port (faults)
    hidden_until: float | None = None  # a slow create: listed (and shown) only from then on

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class StateData:
    next_instance_id: int = FIRST_INSTANCE_ID
    next_ssh_key_id: int = 101
    instances: dict[int, InstanceRecord] = field(default_factory=dict)
    ssh_keys: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    gone_offers: dict[int, float] = field(default_factory=dict)  # offer id -> epoch until which it is gone
    team_keys: list[str] = field(default_factory=list)  # extra account keys flagged as team keys


class StateStore:
    """Loads and atomically saves ``state.json``; callers hold ``lock`` while they mutate ``data``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"
        self.lock = threading.RLock()
        self.data = self._load()

    def _load(self) -> StateData:
        if not self.path.exists():
            return StateData()
        raw = json.loads(self.path.read_text())
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"{self.path}: state version {raw.get('version')!r}, this emulator reads {STATE_VERSION}")
        return StateData(
            next_instance_id=int(raw["next_instance_id"]),
            next_ssh_key_id=int(raw["next_ssh_key_id"]),
            instances={int(k): InstanceRecord.from_dict(v) for k, v in raw["instances"].items()},
            ssh_keys=list(raw["ssh_keys"]),
            secrets=dict(raw["secrets"]),
            gone_offers={int(k): float(v) for k, v in raw.get("gone_offers", {}).items()},
            team_keys=list(raw.get("team_keys", [])),
        )

    def save(self) -> None:
        with self.lock:
            payload = {
                "version": STATE_VERSION,
                "next_instance_id": self.data.next_instance_id,
                "next_ssh_key_id": self.data.next_ssh_key_id,
                "instances": {str(k): asdict(v) for k, v in self.data.instances.items()},
                "ssh_keys": self.data.ssh_keys,
                "secrets": self.data.secrets,
                "gone_offers": {str(k): v for k, v in self.data.gone_offers.items()},
                "team_keys": self.data.team_keys,
            }
            tmp = self.path.with_suffix(".tmp")
            # The file holds account env-vars and instance keys: owner-only.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle, indent=1)
            os.replace(tmp, self.path)
