# SPDX-License-Identifier: MIT
"""What every vast_* module shares: the credential options, the client, the error report, offer search.

Modules run on the controller with the repository's virtualenv python (like boto3-based modules), so the
client is the ordinary `vastkit` package; this file is only the Ansible side of it.
"""

from __future__ import annotations

import difflib
import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    from vastkit.client import VastAPI
    from vastkit.errors import VastAPIError, VastConfigError
    from vastkit.query import OfferFilter, QueryError  # pylint: disable=unused-import  # the modules import it from here

    VASTKIT_IMPORT_ERROR = None
except ImportError:  # reported by VastModuleContext, with the fix
    VastAPI = VastAPIError = VastConfigError = OfferFilter = QueryError = None
    VASTKIT_IMPORT_ERROR = traceback.format_exc()

MIN_DISK_GB = 8  # the API's minimum disk (create_instance.yaml x-input-validation)

# The credential options, defined once (doc fragment: plugins/doc_fragments/vast.py).
VAST_COMMON_ARGS = dict(
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["VAST_API_KEY"])),
    api_url=dict(type="str", fallback=(env_fallback, ["VAST_URL"])),
)

# Offer search options shared by vast_offer_info and vast_instance (doc fragment: vast.search).
VAST_SEARCH_ARGS = dict(
    gpu_name=dict(type="str"),
    num_gpus=dict(type="int"),
    min_reliability=dict(type="float"),
    max_dph=dict(type="float", aliases=["max_price"]),
    min_cuda=dict(type="float"),
    min_gpu_ram=dict(type="float"),
    geolocation=dict(type="list", elements="str"),
    direct_ssh=dict(type="bool", default=False),
    interruptible=dict(type="bool", default=False),
    query=dict(type="str"),
    order=dict(type="str", default="dph_total"),
    disk=dict(type="float", default=64),
)
SEARCH_KEYS = ("gpu_name", "num_gpus", "min_reliability", "max_dph", "min_cuda", "min_gpu_ram", "geolocation",
               "query")


def vast_argument_spec(**extra) -> dict:
    """The module's argument_spec: the shared credential options plus its own."""
    spec = {name: dict(option) for name, option in VAST_COMMON_ARGS.items()}
    spec.update(extra)
    return spec


def search_argument_spec() -> dict:
    return {name: dict(option) for name, option in VAST_SEARCH_ARGS.items()}


class VastModuleContext:
    """One module run's view of Vast: a lazily built client and the single way to report an API failure."""

    def __init__(self, module):
        self.module = module
        if VASTKIT_IMPORT_ERROR:
            module.fail_json(
                msg=missing_required_lib("vastkit", reason="the modules run with the repository's .venv python; "
                                         "run .venv/bin/ansible-playbook, or pip install -e . into this python"),
                exception=VASTKIT_IMPORT_ERROR)
        self._api = None

    @property
    def api(self):
        if self._api is None:
            self._api = self.new_client()
        return self._api

    def new_client(self):
        """A fresh client (one per thread of work)."""
        try:
            return VastAPI.from_env(api_key=self.module.params.get("api_key"), url=self.module.params.get("api_url"))
        except VastConfigError as exc:
            self.module.fail_json(msg=str(exc))

    def fail_api(self, exc, what: str, **extra):
        """Fail with the API's status, code and message (never a request URL with a query string)."""
        self.module.fail_json(msg=f"{what}: {exc}", api_error=exc.as_dict(), **extra)

    def fail_query(self, exc, **extra):
        self.module.fail_json(msg=str(exc), **extra)


def offer_filter(params: dict, *, exclude_machine_ids=(), min_disk: float | None = None):
    """Structured module options → `OfferFilter` (the Vast query language is the client's business)."""
    return OfferFilter(
        gpu_name=params.get("gpu_name"),
        num_gpus=params.get("num_gpus"),
        min_reliability=params.get("min_reliability"),
        max_dph=params.get("max_dph"),
        min_disk=min_disk if min_disk is not None else params.get("disk"),
        min_cuda=params.get("min_cuda"),
        min_gpu_ram_gb=params.get("min_gpu_ram"),
        geolocation=params.get("geolocation"),
        direct_ssh=bool(params.get("direct_ssh")),
        exclude_machine_ids=tuple(sorted(int(m) for m in exclude_machine_ids)),
        query=params.get("query"),
        image=params.get("image"),  # without min_cuda: only hosts whose driver can start the image
    )


def search_offers(api, params: dict, *, exclude_machine_ids=(), limit: int | None = None, **overrides):
    """Offers for the module's search options, best first (by `order`)."""
    merged = dict(params, **overrides)
    return api.search_offers(
        offer_filter(merged, exclude_machine_ids=exclude_machine_ids),
        order=merged.get("order") or "dph_total",
        offer_type="bid" if merged.get("interruptible") else "on-demand",
        limit=limit,
        storage_gb=float(merged.get("disk") or 5.0),
    )


def check_disk(module, disk) -> None:
    if disk is not None and float(disk) < MIN_DISK_GB:
        module.fail_json(msg=f"disk={disk:g} GB is below Vast's minimum of {MIN_DISK_GB} GB; "
                             f"use at least {MIN_DISK_GB} (64 is the launch default)")


def normalise_gpu_name(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def unknown_gpu_message(api, gpu_name: str | None) -> str | None:
    """None when `gpu_name` is a GPU Vast knows (or cannot be checked); else a message with suggestions."""
    if not gpu_name:
        return None
    try:
        known = api.gpu_names()
    except VastAPIError:
        return None  # the list is a convenience endpoint; the search itself still filters correctly
    if not known:
        return None
    by_norm = {normalise_gpu_name(name): name for name in known}
    if normalise_gpu_name(gpu_name) in by_norm:
        return None
    close = difflib.get_close_matches(normalise_gpu_name(gpu_name), list(by_norm), n=4, cutoff=0.5)
    hint = (f"did you mean {', '.join(by_norm[c].replace(' ', '_') for c in close)}? " if close else "")
    listing = ", ".join(sorted(n.replace(" ", "_") for n in known))
    return f"unknown GPU name {gpu_name!r}: {hint}known GPU names: {listing}"


def describe_search(params: dict) -> str:
    """One line naming the search options that were set, for error messages."""
    words = [f"{key}={params[key]}" for key in SEARCH_KEYS if params.get(key) not in (None, [], "")]
    if params.get("interruptible"):
        words.append("interruptible")
    words.append(f"disk>={params.get('disk'):g}GB")
    return " ".join(words)


def offer_summary(offer) -> dict:
    """The offer fields a person compares: what, where, how reliable, how much."""
    data = offer.to_dict()
    data["dph_total"] = round(offer.dph_total, 4)
    return data


def instance_facts(instance, now: float | None = None) -> dict:
    """An instance as modules return it: the record, how to SSH in, its age and an estimate of its cost."""
    data = instance.to_dict()
    ssh = data.get("ssh")
    data["ssh_command"] = f"ssh -p {ssh['port']} root@{ssh['host']}" if ssh else None
    now = time.time() if now is None else now
    age_h = max(0.0, (now - instance.start_date) / 3600) if instance.start_date else None
    data["age_hours"] = round(age_h, 3) if age_h is not None else None
    # An upper bound: Vast bills the GPU from `running` and the disk from creation.
    data["cost_estimate"] = round(age_h * instance.dph_total, 4) if age_h is not None and instance.dph_total else None
    return data
