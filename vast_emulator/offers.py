"""The offer catalogue: loading the data file, pricing, and search as ``POST /api/v0/bundles/`` does it."""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from . import querying
from .errors import invalid_args

# Keys of a search body that are not column filters.
SEARCH_CONTROL_KEYS = ("order", "type", "limit", "allocated_storage", "disable_bundling", "extra_ids", "select_cols")
DEFAULT_LIMIT = 64
HOURS_PER_MONTH = 730.0
REQUIRED_FIELDS = ("id", "machine_id", "gpu_name", "num_gpus", "dph_base", "storage_cost", "geolocation")


@dataclass(frozen=True)
class Catalogue:
    """All offers of the marketplace by id, as loaded from the data file."""

    offers: dict[int, dict[str, Any]]

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        if path is None:
            text = resources.files("vast_emulator").joinpath("data/offers.json").read_text()
            source = "vast_emulator/data/offers.json"
        else:
            text = Path(path).read_text()
            source = str(path)
        data = json.loads(text)
        rows = data["offers"] if isinstance(data, dict) else data
        offers: dict[int, dict[str, Any]] = {}
        for row in rows:
            missing = [f for f in REQUIRED_FIELDS if f not in row]
            if missing:
                raise ValueError(f"{source}: offer {row.get('id')!r} lacks {', '.join(missing)}")
            offers[int(row["id"])] = dict(row)
        if not offers:
            raise ValueError(f"{source}: no offers")
        return cls(offers)

    def gpu_names(self) -> list[str]:
        return sorted({o["gpu_name"] for o in self.offers.values()})


def priced(offer: dict[str, Any], storage_gb: float, bid: bool = False) -> dict[str, Any]:
    """The offer as search returns it: dph_total includes storage for the requested disk, score and per-$ metrics."""
    row = dict(offer)
    storage_hour = float(offer["storage_cost"]) * storage_gb / HOURS_PER_MONTH
    gpu_hour = float(offer["min_bid"] if bid and "min_bid" in offer else offer["dph_base"])
    total = round(gpu_hour + storage_hour, 6)
    row["dph_total"] = total
    row["discounted_dph_total"] = total
    row["is_bid"] = bid
    dlperf = float(offer.get("dlperf") or 0.0)
    row["dlperf_per_dphtotal"] = round(dlperf / total, 3) if total else None
    row["flops_per_dphtotal"] = round(float(offer.get("total_flops") or 0.0) / total, 3) if total else None
    row["score"] = round(dlperf * float(offer.get("reliability2") or offer.get("reliability") or 1.0) / max(total, 0.01), 3)
    row["search"] = {
        "gpuCostPerHour": gpu_hour,
        "diskHour": round(storage_hour, 6),
        "totalHour": total,
        "discountTotalHour": 0,
        "discountedTotalPerHour": total,
    }
    return row


def search(catalogue: Catalogue, body: dict[str, Any], unavailable: Container[int]) -> list[dict[str, Any]]:
    """Filter, order and limit the available offers as the query body asks."""
    if not isinstance(body, dict):
        raise invalid_args("Search body must be a JSON object of {field: {op: value}} filters")
    offer_type = str(body.get("type") or "on-demand")
    if offer_type not in ("on-demand", "bid", "reserved", "interruptible"):
        raise invalid_args(f"Unknown offer type {offer_type!r}; allowed: on-demand, bid, reserved")
    try:
        storage = float(body.get("allocated_storage") or 5.0)
    except (TypeError, ValueError) as exc:
        raise invalid_args("allocated_storage must be a number of GB") from exc
    limit = body.get("limit")
    try:
        limit = DEFAULT_LIMIT if limit is None else max(int(limit), 0)
    except (TypeError, ValueError) as exc:
        raise invalid_args("limit must be an integer") from exc
    filters = {k: v for k, v in body.items() if k not in SEARCH_CONTROL_KEYS}
    bid = offer_type in ("bid", "interruptible")
    rows = [
        priced(offer, storage, bid)
        for offer_id, offer in catalogue.offers.items()
        if offer_id not in unavailable
    ]
    rows = [r for r in rows if querying.matches(r, filters)]
    order = querying.parse_order(body.get("order") or [["score", "desc"]])
    return querying.sort_rows(rows, order)[:limit]
