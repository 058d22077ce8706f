"""The route table: (method, path pattern) -> handler and who may call it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .admin import AdminApi
from .api_account import AccountApi
from .api_instances import InstanceApi
from .http_types import Request, Response

ID = r"(?P<id>\d+)"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[Request], Response]
    auth: str  # "none" | "key" (account or instance key; handlers narrow it) | "account"


def build_routes(api: InstanceApi, account: AccountApi, admin: AdminApi) -> list[Route]:
    table: list[tuple[str, str, Callable[[Request], Response], str]] = [
        ("GET", r"/api/v0/gpu_names/unique/?", api.gpu_names, "none"),
        ("GET", r"/presigned/(?P<token>[A-Za-z0-9._-]+)", api.presigned, "none"),
        ("POST", r"/api/v0/bundles/?", api.search_bundles, "key"),
        ("GET", r"/api/v0/bundles/?", api.search_bundles, "key"),
        ("PUT", r"/api/v0/search/asks/?", api.search_asks, "key"),
        ("PUT", rf"/api/v0/asks/{ID}/?", api.create_instance, "key"),
        ("GET", r"/api/v1/instances/?", api.list_v1, "key"),
        ("GET", r"/api/v0/instances/?", api.list_v0, "key"),
        ("GET", r"/api/v0/instances/filters/?", api.instance_filters, "key"),
        ("PUT", r"/api/v0/instances/?", api.manage_many, "key"),
        ("DELETE", r"/api/v0/instances/?", api.destroy_many, "key"),
        ("PUT", rf"/api/v0/instances/reboot/{ID}/?", api.reboot_instance, "key"),
        ("PUT", rf"/api/v0/instances/request_logs/{ID}/?", api.request_logs, "key"),
        ("GET", rf"/api/v0/instances/{ID}/ssh/?", api.list_instance_ssh, "key"),
        ("POST", rf"/api/v0/instances/{ID}/ssh/?", api.attach_ssh, "key"),
        ("DELETE", rf"/api/v0/instances/{ID}/ssh/(?P<key_id>\d+)/?", api.detach_ssh, "key"),
        ("GET", rf"/api/v0/instances/{ID}/?", api.show_instance, "key"),
        ("PUT", rf"/api/v0/instances/{ID}/?", api.manage_instance, "key"),
        ("DELETE", rf"/api/v0/instances/{ID}/?", api.destroy_instance, "key"),
        ("GET", r"/api/v0/users/current/?", account.current_user, "key"),
        ("GET", r"/api/v0/secrets/?", account.list_secrets, "key"),
        ("POST", r"/api/v0/secrets/?", account.create_secret, "key"),
        ("PUT", r"/api/v0/secrets/?", account.update_secret, "key"),
        ("DELETE", r"/api/v0/secrets/?", account.delete_secret, "key"),
        ("GET", r"/api/v0/ssh/?", account.list_ssh_keys, "key"),
        ("POST", r"/api/v0/ssh/?", account.create_ssh_key, "key"),
        ("PUT", rf"/api/v0/ssh/{ID}/?", account.update_ssh_key, "key"),
        ("DELETE", rf"/api/v0/ssh/{ID}/?", account.delete_ssh_key, "key"),
        ("POST", r"/_emulator/faults/?", admin.add_faults, "account"),
        ("POST", r"/_emulator/reset-faults/?", admin.reset_faults, "account"),
        ("GET", r"/_emulator/requests/?", admin.requests, "account"),
        ("GET", r"/_emulator/state/?", admin.state, "account"),
        ("GET", r"/_emulator/settings/?", admin.get_settings, "account"),
        ("POST", r"/_emulator/settings/?", admin.put_settings, "account"),
        ("GET", r"/_emulator/secrets/?", admin.secrets, "account"),
        ("POST", r"/_emulator/api-keys/?", admin.add_api_key, "account"),
    ]
    return [Route(m, re.compile(f"^{p}$"), h, a) for m, p, h, a in table]


def match(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """The route for (method, path), its path parameters, and whether the path exists for another method."""
    path_known = False
    for route in routes:
        found = route.pattern.match(path)
        if found:
            path_known = True
            if route.method == method:
                return route, found.groupdict(), True
    return None, {}, path_known
