"""`VastAPI`: the one Vast.ai client, for the Ansible modules, the inventory plugin and the on-instance supervisor.

Built on the official package's API layer (`vastai.api.*`), which speaks the wire format by construction.
Thin additions, each for a reason:
- the package's `VastClient` retries with a fixed 0.15 s × 1.5 schedule and no jitter, and would resend a
  create after a 502; we give it one attempt and retry here with `RetryPolicy` (jittered, Retry-After aware,
  create retried only when the server certainly did nothing);
- its functions raise `requests.HTTPError`; we turn that into `VastAPIError` carrying status, code and msg;
- it returns raw rows; we return `Offer`/`Instance` records;
- destroy of an instance that is already gone is success here (idempotent teardown), whether the API says
  so with a 404 or with `200 {"success": false, "error": "no_such_instance"}`;
- a create gets the official client's 120 s request timeout (a slow create answered late is still a create),
  the other calls a shorter one;
- every request is paced to Vast's per-endpoint rate limits (`vastkit.pacing`), across the processes of one
  controller, so a fleet's forks send their creates one after another instead of earning 429s and penalties;
- instance rows are read without the package's post-processing (it computes `now - start_date` and crashes
  on the `start_date: null` Vast sometimes shows), and one account listing serves every `get_instance` and
  `list_instances` of those processes for a second (Vast allows one listing a second but one show per
  instance every two: a fleet waiting on 16 instances makes one request per tick, not 16);
- a create refused with an error that still carries `new_contract` (a bid below `min_bid` creates a stopped
  instance) destroys that instance before the error travels on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from vastai.api import auth, billing, instances, keys, offers
from vastai.api.client import VastClient

from vastkit import query as vquery
from vastkit.errors import VastAPIError
from vastkit.pacing import LIMITS, Pacer, endpoint_of, threshold_seconds
from vastkit.records import TAG_PREFIX, CreatedInstance, Instance, Offer, SshKey
from vastkit.retry import RetryPolicy, is_transient, retry_after_seconds
from vastkit.settings import ApiSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Vast's recommended tag: the backend picks the newest CUDA build the host's driver supports (vast-api.md §7).
DEFAULT_IMAGE = vquery.AUTO_TAG_IMAGE
LISTING_PAGE = 25  # the v1 listing's page size (the API's maximum)
SHARED_LISTING_MAX_PAGES = 2  # a bigger account is asked per instance instead (each page is a paced request)
LISTING_FILE = "listing.json"
# Direct SSH when the machine has open ports (faster, preferred by Vast's docs), proxy otherwise.
DEFAULT_RUNTYPE = "ssh_direc ssh_proxy"
CREATE_TIMEOUT_S = 120.0  # vastai.api.client._DEFAULT_TIMEOUT_SECONDS


class VastAPI:
    """Typed, retrying access to the Vast.ai REST API. Safe to share within one thread of work."""

    def __init__(self, settings: ApiSettings, *, retry: RetryPolicy | None = None, timeout: float = 30.0,
                 create_timeout: float = CREATE_TIMEOUT_S, pacer: Pacer | None = None):
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.create_timeout = create_timeout
        self.pacer = pacer or Pacer(settings.identity, scale=settings.pacing_scale, directory=settings.pacing_dir)
        self._listing = SharedListing(self.pacer)
        # retry=1: one attempt per call; the retry loop is ours (see module docstring).
        self._client = _PacedClient(self.pacer, api_key=settings.api_key, server_url=settings.url, retry=1,
                                    timeout=timeout)

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
                    # Vast's 429 has no Retry-After; its plain-text body may name the endpoint's threshold.
                    retry_after = exc.retry_after
                    if retry_after is None and exc.status == 429:
                        retry_after = threshold_seconds(exc.msg)
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
        self._listing.invalidate()
        try:
            body = self._call(_create_json, f"/asks/{int(offer_id)}/", payload, self.create_timeout, idempotent=False)
        except _CreatedAnyway as refused:
            raise self._destroy_created_anyway(refused) from None
        finally:
            self._listing.invalidate()
        if not body.get("success") or not body.get("new_contract"):
            raise VastAPIError(200, body.get("error"), str(body.get("msg") or "create returned no instance id"),
                               method="PUT", path=f"/api/v0/asks/{offer_id}/")
        return CreatedInstance(id=int(body["new_contract"]), instance_api_key=body.get("instance_api_key"))

    def _destroy_created_anyway(self, refused: _CreatedAnyway) -> VastAPIError:
        """The create failed but Vast made an instance anyway (a bid below min_bid: a stopped one): destroy it."""
        error, instance_id = refused.error, refused.instance_id
        try:
            self.destroy_instance(instance_id)
        except VastAPIError as exc:
            return VastAPIError(error.status, error.error or "created_anyway",
                                f"{error.msg}; the API created instance {instance_id} anyway and destroying it "
                                f"FAILED ({exc}): destroy it yourself (vastai destroy instance {instance_id} -y)",
                                method=error.method, path=error.path)
        return VastAPIError(error.status, error.error, f"{error.msg} (the API created instance {instance_id} anyway; "
                            f"it was destroyed)", method=error.method, path=error.path)

    def list_instances(
        self, *, label: str | None = None, label_prefix: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[Instance]:
        """All instances of the account (v1 endpoint, every page), filtered server-side where the API can."""
        shared = self._shared_rows()
        if shared is not None:
            statuses = set(statuses) if statuses else None
            rows = [r for r in shared if (label is None or r.get("label") == label)
                    and (statuses is None or r.get("actual_status") in statuses)]
        else:
            select: dict = {}
            if label is not None:
                select["label"] = {"in": [label]}
            if statuses:
                select["actual_status"] = {"in": list(statuses)}
            rows = self._rows(select)
        found = [Instance.from_api(r) for r in rows]
        if label_prefix:
            found = [i for i in found if (i.label or "").startswith(label_prefix)]
        return found

    def get_instance(self, instance_id: int) -> Instance | None:
        """The instance, or None when the account has no such instance (any more).

        Read from the shared account listing while that is fresh; an instance it does not show (created since,
        or gone) is asked for by id, so None always comes from the API's own answer for that id."""
        shared = self._shared_rows()
        for row in shared or ():
            if row.get("id") == int(instance_id):
                return Instance.from_api(row)
        try:
            row = self._call(_show_instance, int(instance_id))
        except VastAPIError as exc:
            if exc.is_not_found:
                return None
            raise
        return Instance.from_api(row) if row else None

    # The account listing, page by page (each page a paced request), rows as the API sent them.
    def _rows(self, select_filters: dict) -> list[dict]:
        params = {"select_filters": select_filters, "order_by": [{"col": "id", "dir": "asc"}], "limit": LISTING_PAGE}
        rows: list[dict] = []
        while True:
            page = self._call(_get_json, "/api/v1/instances/", params)
            rows += [r for r in (page or {}).get("instances") or [] if isinstance(r, dict) and "id" in r]
            token = (page or {}).get("next_token")
            if not token:
                return rows
            params = {**params, "after_token": token}

    def _shared_rows(self) -> list[dict] | None:
        """Every instance of the account from a listing at most about a second old, shared by this controller's
        processes; None when pacing is off or the account is too big to list every time."""
        if not self.pacer.enabled:
            return None
        max_age = LIMITS["show_instances"].interval * self.pacer.scale * 1.5
        cached = self._listing.read(max_age)
        if cached is not None:
            return cached if len(cached) <= LISTING_PAGE * SHARED_LISTING_MAX_PAGES else None
        with self.pacer.hold("show_instances"):
            cached = self._listing.read(max_age)  # another process listed while we waited for the lock
            if cached is None:
                started = time.time()
                cached = self._rows({})
                self._listing.write(started, cached)
        return cached if len(cached) <= LISTING_PAGE * SHARED_LISTING_MAX_PAGES else None

    def destroy_instance(self, instance_id: int) -> bool:
        """Destroy (all billing stops). True if this call destroyed it, False if it was already gone."""
        try:
            body = self._call(instances.destroy_instance, int(instance_id))
        except VastAPIError as exc:
            if exc.is_not_found:
                return False
            raise
        finally:
            self._listing.invalidate()
        if isinstance(body, dict) and body.get("success") is False and body.get("error") == "no_such_instance":
            return False  # what the API answers for an instance that is already gone, besides a 404
        _require_success(body, "DELETE", f"/api/v0/instances/{instance_id}/")
        return True

    def stop_instance(self, instance_id: int) -> None:
        """Stop: GPU billing stops, disk is kept (and still billed)."""
        self._listing.invalidate()
        body = self._call(instances.stop_instance, int(instance_id))
        _require_success(body, "PUT", f"/api/v0/instances/{instance_id}/")

    def start_instance(self, instance_id: int) -> None:
        self._listing.invalidate()
        body = self._call(instances.start_instance, int(instance_id))
        _require_success(body, "PUT", f"/api/v0/instances/{instance_id}/")

    def label_instance(self, instance_id: int, label: str) -> None:
        self._listing.invalidate()
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
        """Create or update; returns 'created', 'updated' or 'unchanged' (no write when the value is equal).

        Vast masks values on read (`********`), so an existing variable is updated unless its value is shown
        and equal."""
        current = self.env_vars()
        if name not in current:
            self.create_env_var(name, value)
            return "created"
        if current[name] == value and not is_masked(current[name]):
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


def is_masked(value: str | None) -> bool:
    """A value the API hides (`********`, `*****`): nothing can be compared against it."""
    return bool(value) and set(str(value)) == {"*"}


class _PacedClient(VastClient):
    """The package's client with every rate-limited request paced (and its 429s recorded) by a `Pacer`."""

    def __init__(self, pacer: Pacer, **kwargs):
        super().__init__(**kwargs)
        self.pacer = pacer

    def _request(self, method, url, headers, json_data=None, timeout=None):
        name = endpoint_of(method, urlsplit(url).path)
        if name is None:
            return super()._request(method, url, headers, json_data, timeout=timeout)
        with self.pacer.slot(name) as turn:
            response = super()._request(method, url, headers, json_data, timeout=timeout)
            turn.refused = response.status_code == 429
            return response


class SharedListing:
    """The last account listing, in a file beside the pacing state, for every process of this controller.

    Only what records need is kept: no `onstart`, no `jupyter_token`, and of `extra_env` only the `VASTKIT_*`
    tags (it may hold values users passed)."""

    def __init__(self, pacer: Pacer):
        directory = pacer.directory
        self.path = directory / LISTING_FILE if directory is not None else None
        self._memory: tuple[float, list[dict]] | None = None

    def read(self, max_age: float) -> list[dict] | None:
        if self.path is None:
            entry = self._memory
        else:
            try:
                data = json.loads(self.path.read_text())
                entry = (float(data["started"]), list(data["rows"]))
            except (OSError, ValueError, KeyError, TypeError):
                entry = None
        if entry is None or time.time() - entry[0] > max_age:
            return None
        return entry[1]

    def write(self, started: float, rows: list[dict]) -> None:
        kept = [_without_private(r) for r in rows]
        if self.path is None:
            self._memory = (started, kept)
            return
        tmp = self.path.with_name(f".{LISTING_FILE}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"started": started, "rows": kept}, handle)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("cannot share the instance listing: %s", exc)

    def invalidate(self) -> None:
        """After a change of ours (create, destroy, start, stop, label): the next read lists again."""
        self._memory = None
        if self.path is not None:
            Path(self.path).unlink(missing_ok=True)


def _without_private(row: dict) -> dict:
    kept = {k: v for k, v in row.items() if k not in ("onstart", "jupyter_token", "extra_env")}
    env = row.get("extra_env")
    pairs = env.items() if isinstance(env, dict) else env if isinstance(env, list) else []
    kept["extra_env"] = [[str(p[0]), str(p[1])] for p in pairs
                         if isinstance(p, (list, tuple)) and len(p) == 2 and str(p[0]).startswith(TAG_PREFIX)]
    return kept


class _CreatedAnyway(Exception):
    """A create answered with an error whose body still names the instance it made (`new_contract`)."""

    def __init__(self, error: VastAPIError, instance_id: int):
        super().__init__(str(error))
        self.error = error
        self.instance_id = instance_id


def _create_json(client: VastClient, path: str, payload: dict, timeout: float):
    """`instances.create_instance_from_payload` with a request timeout of our choosing; an error body that
    carries `new_contract` raises `_CreatedAnyway`."""
    response = client.put(path, json_data=payload, timeout=timeout)
    try:
        body = response.json()
    except ValueError:
        body = None
    status = getattr(response, "status_code", 200)
    if isinstance(body, dict) and body.get("new_contract") and (status >= 400 or body.get("success") is False):
        if status >= 400:
            error = VastAPIError.from_response(response)
        else:
            error = VastAPIError(status, body.get("error"), str(body.get("msg") or "create failed"),
                                 method="PUT", path=f"/api/v0{path}")
        raise _CreatedAnyway(error, int(body["new_contract"]))
    response.raise_for_status()
    return body


def _show_instance(client: VastClient, instance_id: int) -> dict | None:
    """`GET /instances/{id}/?owner=me`'s row as sent (`instances.show_instance` crashes on `start_date: null`)."""
    response = client.get(f"/instances/{instance_id}/", query_args={"owner": "me"})
    response.raise_for_status()
    row = (response.json() or {}).get("instances")
    return row if isinstance(row, dict) else None


def _translate(fn: Callable[..., T], *args, **kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except requests.HTTPError as exc:
        raise VastAPIError.from_response(exc.response) from None


def _get_json(client: VastClient, path: str, query_args: dict | None = None):
    response = client.get(path, query_args=query_args)
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
