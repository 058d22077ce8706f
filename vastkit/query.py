"""Offer search queries: the Vast query language, or structured options turned into it.

Parsing is the vastai package's own (`parse_query`, `parse_order`); this module only adds the structured
options our modules expose and a check that GPU names look like Vast's.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass

from vastai.api.query import offers_alias, offers_fields, offers_mult, parse_order, parse_query

# Vast's own choice for its images (vast-api.md §7): the backend resolves it to the newest `cuda-X.Y.Z-auto`
# tag the host's driver supports. Its oldest published CUDA is 12.6, so hosts below that cannot run it.
AUTO_TAG = "@vastai-automatic-tag"
AUTO_TAG_IMAGE = f"vastai/pytorch:{AUTO_TAG}"
AUTO_TAG_MIN_CUDA = 12.6
_CUDA_IN_TAG = re.compile(r"cuda[-_]?(\d+)\.(\d+)", re.IGNORECASE)


def min_cuda_for_image(image: str | None) -> float | None:
    """The lowest `cuda_max_good` a host needs to start `image`: the automatic tag's oldest build, or the CUDA
    version an explicit tag names (`cuda-12.8.1-auto`, `2.5.1-cuda12.4-...`); None when the tag names none.

    A host below it leaves the instance at `created` with "OCI runtime create failed" for ever, so searches
    filter on it instead of renting such a host."""
    if not image:
        return None
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if tag == AUTO_TAG:
        return AUTO_TAG_MIN_CUDA
    found = _CUDA_IN_TAG.search(tag)
    return float(f"{found.group(1)}.{found.group(2)}") if found else None


class QueryError(ValueError):
    """A search query that the Vast query language cannot express. Says what is allowed."""


@dataclass(frozen=True)
class OfferFilter:
    """Structured search options. Every field is optional; `query` is raw Vast query text added last."""

    gpu_name: str | None = None
    num_gpus: int | None = None
    min_reliability: float | None = None
    max_dph: float | None = None
    min_disk: float | None = None
    min_cuda: float | None = None
    min_gpu_ram_gb: float | None = None
    geolocation: list[str] | None = None
    direct_ssh: bool = False
    exclude_machine_ids: tuple[int, ...] = ()
    query: str | None = None
    image: str | None = None  # the image to run: without min_cuda, hosts whose driver cannot start it are left out

    def to_query(self) -> dict:
        """The filter dict sent as the body of `POST /bundles/` (without defaults, order and type)."""
        words = []
        if self.gpu_name:
            words.append(f"gpu_name={self.gpu_name.replace(' ', '_')}")
        if self.num_gpus is not None:
            words.append(f"num_gpus={int(self.num_gpus)}")
        if self.min_reliability is not None:
            words.append(f"reliability>={float(self.min_reliability)}")
        if self.max_dph is not None:
            words.append(f"dph_total<={float(self.max_dph)}")
        if self.min_disk is not None:
            words.append(f"disk_space>={float(self.min_disk)}")
        min_cuda = self.min_cuda if self.min_cuda is not None else min_cuda_for_image(self.image)
        if min_cuda is not None:
            words.append(f"cuda_max_good>={float(min_cuda)}")
        if self.min_gpu_ram_gb is not None:
            words.append(f"gpu_ram>={float(self.min_gpu_ram_gb)}")
        if self.geolocation:
            words.append(f"geolocation in [{','.join(c.strip().upper() for c in self.geolocation)}]")
        if self.direct_ssh:
            words.append("direct_port_count>=1")
        if self.query:
            words.append(self.query.strip())
        result = parse(" ".join(words)) if words else {}
        if self.exclude_machine_ids:
            # parse_query has no int lists; the server compares machine_id numerically.
            result["machine_id"] = {"notin": [int(m) for m in self.exclude_machine_ids]}
        return result


def parse(query: str) -> dict:
    """Vast query text → filter dict, with the package's parser. Unknown fields are errors here, not warnings."""
    fields = {offers_alias.get(f, f) for f in _field_names(query)}
    unknown = sorted(f for f in fields if f not in offers_fields and f not in offers_alias.values())
    if unknown:
        raise QueryError(f"unknown search field(s) {', '.join(unknown)}; valid fields include: "
                         f"{', '.join(sorted(offers_fields)[:40])}, …")
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parse_query(query, {}, offers_fields, offers_alias, offers_mult)
    except ValueError as exc:
        raise QueryError(f"bad search query {query!r}: {exc}") from None


def order(text: str | list | None) -> list | None:
    """`'dph'` or `'dph,reliability-'` → `[["dph_total","asc"], ["reliability","desc"]]`."""
    return parse_order(text, offers_alias) if text is not None else None


def _field_names(query: str) -> list[str]:
    import re

    return re.findall(r"(?:^|\s)([a-zA-Z0-9_]+)\s*(?:[=><!]|\s(?:[lg]te?|nin|neq|eq|not ?eq|not ?in|in)\s)", query)
