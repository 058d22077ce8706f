"""How an instance reads through the API: the row of vast-api.md §3.3, from its record and its offer."""

from __future__ import annotations

import time
from typing import Any

from .gateway import DIRECT_HOST, PROXY_HOST
from .offers import priced
from .store import InstanceRecord

PENDING = ("created", "loading")
STARTED = ("running", *PENDING, "rebooting")


def contract_states(rec: InstanceRecord) -> tuple[str, str]:
    """``(cur_state, next_state)``: what the contract is now and what it is headed for.

    A container that runs or is starting is "running"; a stopped, preempted, exited or offline one "stopped".
    ``next_state`` follows ``intended_status``, so a user stop and an outbid both read
    ``cur_state == intended_status == next_state == "stopped"`` (the signal clients look for), while an
    exited or offline host that Vast will bring back reads stopped -> running.
    """
    cur = "running" if rec.actual_status in STARTED else "stopped"
    return cur, "running" if rec.intended_status == "running" else "stopped"


def public_row(rec: InstanceRecord, offer: dict[str, Any]) -> dict[str, Any]:
    """The instance as GET /api/v0/instances/{id}/ shows it (vast-api.md §3.3)."""
    price = priced(offer, rec.disk, bid=rec.price is not None)
    if rec.price is not None:
        price["dph_total"] = round(float(rec.price) + price["search"]["diskHour"], 6)
    running = rec.actual_status == "running"
    # Direct SSH only where the create asked for it and the machine has open ports; the proxy always.
    direct = "direc" in (rec.runtype or "") and int(offer.get("direct_port_count") or 0) > 0
    port = (rec.direct_port or rec.ssh_port) if direct else None
    now = time.time()
    cur_state, next_state = contract_states(rec)
    return {
        "id": rec.id,
        "machine_id": offer["machine_id"],
        "host_id": offer.get("host_id"),
        "bundle_id": offer.get("bundle_id"),
        "actual_status": rec.actual_status,
        "intended_status": rec.intended_status,
        "cur_state": cur_state,
        "next_state": next_state,
        "status_msg": rec.status_msg,
        "label": rec.label,
        "image_uuid": rec.image,
        "image_runtype": rec.runtype,
        "image_args": list(rec.args or []),
        "extra_env": [[k, v] for k, v in rec.env.items()],
        "onstart": rec.onstart,
        "template_id": None,
        "template_hash_id": rec.template_hash_id,
        "template_name": None,
        "jupyter_token": rec.api_key[:16],
        "num_gpus": offer["num_gpus"],
        "gpu_name": offer["gpu_name"],
        "gpu_arch": offer.get("gpu_arch", "nvidia"),
        "gpu_ram": offer.get("gpu_ram"),
        "gpu_totalram": offer.get("gpu_total_ram"),
        "gpu_util": 0.0 if running else None,
        "gpu_temp": 38.0 if running else None,
        "gpu_frac": 1.0,
        "cuda_max_good": offer.get("cuda_max_good"),
        "driver_version": offer.get("driver_version"),
        "compute_cap": offer.get("compute_cap"),
        "cpu_name": offer.get("cpu_name"),
        "cpu_cores": offer.get("cpu_cores"),
        "cpu_cores_effective": offer.get("cpu_cores_effective"),
        "cpu_ram": offer.get("cpu_ram"),
        "cpu_util": 0.0 if running else None,
        "mem_limit": round(float(offer.get("cpu_ram") or 0) / 1000.0, 1),
        "mem_usage": 0.0 if running else None,
        "disk_space": rec.disk,
        "disk_usage": 0.0,
        "disk_util": 0.0,
        "ssh_host": PROXY_HOST if rec.proxy_port else None,
        "ssh_idx": None,
        "ssh_port": rec.proxy_port,
        "machine_dir_ssh_port": None,
        "public_ipaddr": DIRECT_HOST,
        "local_ipaddrs": "127.0.0.1\n",
        "direct_port_count": offer.get("direct_port_count"),
        "direct_port_start": port,
        "direct_port_end": port,
        "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]} if running and port else {},
        "static_ip": offer.get("static_ip", False),
        "geolocation": offer.get("geolocation"),
        "verification": offer.get("verification"),
        "reliability2": offer.get("reliability2"),
        "inet_up": offer.get("inet_up"),
        "inet_down": offer.get("inet_down"),
        "dph_base": offer["dph_base"] if rec.price is None else rec.price,
        "dph_total": price["dph_total"],
        "storage_cost": offer.get("storage_cost"),
        "inet_up_cost": offer.get("inet_up_cost"),
        "inet_down_cost": offer.get("inet_down_cost"),
        "min_bid": offer.get("min_bid"),
        "is_bid": rec.price is not None,
        "start_date": rec.start_date,
        "end_date": rec.start_date + float(offer.get("duration") or 30 * 86400),
        "uptime_mins": round((now - rec.running_since) / 60.0, 2) if running and rec.running_since else None,
        "volume_info": [],
        "time_remaining": "",
        "time_remaining_isbid": "",
    }


def with_null_fields(row: dict[str, Any], rec: InstanceRecord) -> dict[str, Any]:
    """The ``null_fields`` fault: fields the API shows as null (until running, or until a time)."""
    spec = rec.faults.get("null_fields")
    if not spec:
        return row
    until = spec.get("until")
    active = time.time() < until if until is not None else rec.actual_status != "running"
    if active:
        for name in spec["fields"]:
            if name in row and name != "id":
                row[name] = None
    return row
