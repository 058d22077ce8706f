"""`VastAPI`: the one Vast.ai client, for the Ansible modules, the inventory plugin and the on-instance supervisor.

Built on the official package's API layer (`vastai.api.*`), which speaks the wire format by construction.
Thin additions, each for a reason:
- the package's `VastClient` retries with a fixed 0.15 s × 1.5 schedule and no jitter, and would resend a
  create after a 502; we give it one attempt and retry here with `RetryPolicy` (jittered, Retry-After aware,
  create retried only when the server certainly did nothing);
- its functions raise `requests.HTTPError`; we turn that into `VastAPIError` carrying status, code and msg;
- it returns raw rows; we return `Offer`/`Instance` records;
- destroy of an instance that is already gone is success here (idempotent teardown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

import requests
from vastai.api import auth, billing, instances, keys, offers
from vastai.api.client import VastClient

from vastkit import query as vquery
from vastkit.errors import VastAPIError
from vastkit.records import CreatedInstance, Instance, Offer, SshKey
from vastkit.retry import RetryPolicy, is_transient, retry_after_seconds
from vastkit.settings import ApiSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_IMAGE = "vastai/pytorch"
# Direct SSH when the machine has open ports (faster, preferred by Vast's docs), proxy otherwise.
DEFAULT_RUNTYPE = "ssh_direc ssh_proxy"


class VastAPI:
    """Typed, retrying access to the Vast.ai REST API. Safe to share within one thread of work."""

    def __init__(self, settings: ApiSettings, *, retry: RetryPolicy | None = None, timeout: float = 30.0):
        self.settings = settings
        self.retry = retry or RetryPolicy()
        # retry=1: one attempt per call; the retry loop is ours (see module docstring).
        self._client = VastClient(api_key=settings.api_key, server_url=settings.url, retry=1, timeout=timeout)

    def __repr__(self) -> str:
        return f"VastAPI(url={self.settings.url!r})"

    @classmethod
    def from_env(cls, *, api_key: str | None = None, url: str | None = None, **kwargs) -> VastAPI:
        return cls(ApiSettings.from_env(api_key=api_key, url=url), **kwargs)

    @classmethod
    def for_instance(cls, **kwargs) -> VastAPI:
        """Client for code running inside an instance, with its scoped `CONTAINER_API_KEY`."""
        return cls(ApiSettings.for_instance(), **kwargs)

    # -- plumbing -----------------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args, idempotent: bool = True, **kwargs) -> T:
        attempt = 0
        while True:
            try:
                return _translate(fn, self._client, *args, **kwargs)
            except (VastAPIError, requests.exceptions.RequestException) as exc:
                if not is_transient(exc, idempotent=idempotent):
                    raise _sanitize(exc) from None
                if isinstance(exc, VastAPIError):
                    retry_after = exc.retry_after
                else:
                    retry_after = retry_after_seconds(getattr(exc, "response", None))
                delay = self.retry.delay(attempt, retry_after)
                if delay is None:
                    raise _sanitize(exc) from None
                log.info("Vast API transient failure (%s); retry %d in %.2fs", _short(exc), attempt + 1, delay)
                self.retry.sleep(delay)
                attempt += 1

    # -- offers -------------------------------------------------------------------------------------------

    def search_offers(
        self,
        query: str | dict | vquery.OfferFilter | None = None,
        *,
        order: str | list | None = "dph_total",
        offer_type: str = "on-demand",
        limit: int | None = None,
        storage_gb: float = 5.0,
        no_default: bool = False,
    ) -> list[Offer]:
        """Offers matching `query` (Vast query text, a filter dict, or an `OfferFilter`), best first."""
        if offer_type not in ("on-demand", "bid", "interruptible", "reserved"):
            raise ValueError(f"offer_type {offer_type!r}: expected on-demand, bid (interruptible) or reserved")
        if isinstance(query, vquery.OfferFilter):
            filters = query.to_query()
        elif isinstance(query, str):
            filters = vquery.parse(query)
        else:
            filters = dict(query or {})
        rows = self._call(
            offers.search_offers, query=filters, offer_type=offer_type, order=vquery.order(order),
            limit=limit, storage=float(storage_gb), no_default=no_default,
        )
        return [Offer.from_api(r) for r in rows]

    # -- instances ----------------------------------------------------------------------------------------

    def create_instance(
        self,
        offer_id: int,
        *,
        image: str = DEFAULT_IMAGE,
        disk_gb: float = 64,
        label: str | None = None,
        env: dict[str, str] | None = None,
        onstart: str | None = None,
        bid_price: float | None = None,
        runtype: str = DEFAULT_RUNTYPE,
    ) -> CreatedInstance:
        """Rent `offer_id`. Always `cancel_unavail`: a taken offer is an error, never a silently stopped instance."""
        payload = instances.build_create_instance_payload(
            image=image, disk=float(disk_gb), env=dict(env or {}), bid_price=bid_price, label=label,
            onstart_cmd=onstart, cancel_unavail=True, runtype=runtype,
        )
        body = self._call(instances.create_instance_from_payload, int(offer_id), payload, idempotent=False)
        if not body.get("success") or not body.get("new_contract"):
            raise VastAPIError(200, body.get("error"), str(body.get("msg") or "create returned no instance id"),
                               method="PUT", path=f"/api/v0/asks/{offer_id}/")
        return CreatedInstance(id=int(body["new_contract"]), instance_api_key=body.get("instance_api_key"))

    def list_instances(
        self, *, label: str | None = None, label_prefix: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[Instance]:
        """All instances of the account (v1 endpoint, every page), filtered server-side where the API can."""
        select: dict = {}
        if label is not None:
            select["label"] = {"in": [label]}
        if statuses:
            select["actual_status"] = {"in": list(statuses)}
        rows = self._call(instances.show_instances, select_filters=select)
        found = [Instance.from_api(r) for r in rows]
        if label_prefix:
            found = [i for i in found if (i.label or "").startswith(label_prefix)]
        return found

    def get_instance(self, instance_id: int) -> Instance | None:
        """The instance, or None when the account has no such instance (any more)."""
        try:
            row = self._call(instances.show_instance, int(instance_id))
        except VastAPIError as exc:
            if exc.is_not_found:
                return None
            raise
        return Instance.from_api(row) if row else None

    def destroy_instance(self, instance_id: int) -> bool:
        """Destroy (all billing stops). True if this call destroyed it, False if it was already gone."""
        try:
            body = self._call(instances.destroy_instance, int(instance_id))
        except VastAPIError as exc:
            if exc.is_not_found:
                return False
            raise
        _require_success(body, "DELETE", f"/api/v0/instances/{instance_id}/")
        return True

    def stop_instance(self, instance_id: int) -> None:
        """Stop: GPU billing stops, disk is kept (and still billed)."""
        body = self._call(instances.stop_instance, int(instance_id))
        _require_success(body, "PUT", f"/api/v0/instances/{instance_id}/")

    def start_instance(self, instance_id: int) -> None:
        body = self._call(instances.start_instance, int(instance_id))
        _require_success(body, "PUT", f"/api/v0/instances/{instance_id}/")

    def label_instance(self, instance_id: int, label: str) -> None:
        body = self._call(instances.label_instance, int(instance_id), label)
        _require_success(body, "PUT", f"/api/v0/instances/{instance_id}/")

    def request_logs(self, instance_id: int, *, tail: int | None = None) -> str:
        """The instance's container log (onstart output), via the presigned result URL."""
        return self._call(instances.logs, int(instance_id), tail=str(tail) if tail else None)

    # -- account env-vars (Vast's secret store) -------------------------------------------------------------

    def env_vars(self) -> dict[str, str]:
        return dict(self._call(auth.show_env_vars))

    def create_env_var(self, name: str, value: str) -> None:
        _require_success(self._call(auth.create_env_var, name, value, idempotent=False), "POST", "/api/v0/secrets/")

    def update_env_var(self, name: str, value: str) -> None:
        _require_success(self._call(auth.update_env_var, name, value), "PUT", "/api/v0/secrets/")

    def delete_env_var(self, name: str) -> bool:
        """True if deleted, False if there was no such variable."""
        try:
            body = self._call(auth.delete_env_var, name)
        except VastAPIError as exc:
            if exc.error == "nonexistent_key" or exc.is_not_found:
                return False
            raise
        _require_success(body, "DELETE", "/api/v0/secrets/")
        return True

    def put_env_var(self, name: str, value: str) -> str:
        """Create or update; returns 'created', 'updated' or 'unchanged' (no write when the value is equal)."""
        current = self.env_vars()
        if name not in current:
            self.create_env_var(name, value)
            return "created"
        if current[name] == value:
            return "unchanged"
        self.update_env_var(name, value)
        return "updated"

    # -- SSH keys -----------------------------------------------------------------------------------------

    def ssh_keys(self) -> list[SshKey]:
        body = self._call(keys.show_ssh_keys)
        rows = body if isinstance(body, list) else body.get("ssh_keys", body.get("keys", []))
        return [SshKey.from_api(r) for r in rows]

    def create_ssh_key(self, public_key: str) -> SshKey:
        body = self._call(keys.create_ssh_key, public_key.strip(), idempotent=False)
        _require_success(body, "POST", "/api/v0/ssh/")
        return SshKey.from_api(body.get("key") or {"id": 0, "public_key": public_key})

    def delete_ssh_key(self, key_id: int) -> None:
        body = self._call(keys.delete_ssh_key, int(key_id))
        _require_success(body, "DELETE", f"/api/v0/ssh/{key_id}/")

    def attach_ssh_key(self, instance_id: int, public_key: str) -> None:
        body = self._call(keys.attach_ssh, int(instance_id), public_key.strip())
        _require_success(body, "POST", f"/api/v0/instances/{instance_id}/ssh/")

    # -- account --------------------------------------------------------------------------------------------

    def current_user(self) -> dict:
        return self._call(billing.show_user)

    def gpu_names(self) -> list[str]:
        """GPU model names the marketplace knows (`GET /gpu_names/unique/`, what the CLI checks `-g` against)."""
        body = self._call(_get_json, "/gpu_names/unique/")
        return [str(name) for name in (body or {}).get("gpu_names", [])]


def _translate(fn: Callable[..., T], *args, **kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except requests.HTTPError as exc:
        raise VastAPIError.from_response(exc.response) from None


def _get_json(client: VastClient, path: str):
    response = client.get(path)
    response.raise_for_status()
    return response.json()


def _require_success(body: dict, method: str, path: str) -> None:
    if isinstance(body, dict) and body.get("success") is False:
        raise VastAPIError(200, body.get("error"), str(body.get("msg") or "success: false"), method=method, path=path)


def _sanitize(exc: Exception) -> Exception:
    """Transport errors carry the full URL; keep only scheme, host and path."""
    if isinstance(exc, VastAPIError):
        return exc
    return VastAPIError(None, type(exc).__name__, _short(exc))


def _short(exc: BaseException) -> str:
    if isinstance(exc, VastAPIError):
        return f"HTTP {exc.status} {exc.error or ''}".strip()
    text = str(exc)
    return text.split("?", 1)[0][:200]
