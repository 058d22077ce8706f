"""Account endpoints: the user, account env-vars (``/api/v0/secrets/``) and account SSH keys."""

from __future__ import annotations

import re
import time
from typing import Any

from .access import body_object, require_account
from .errors import ApiError
from .http_types import LiveSettings, Request, Response, ok
from .store import StateStore

MAX_SECRETS = 100
MASK = "********"  # what GET /api/v0/secrets/ shows for every value (vast-cli tests/live/test_live_env_var_cycle.py)
# The documented value pattern (create_env_var.yaml); enforced in strict mode only (whether Vast does is unknown).
SECRET_VALUE = re.compile(r"^[a-zA-Z0-9_\-\.]+$")
MAX_SECRET_VALUE = 4096
SECRET_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
PUBLIC_KEY = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$")
USER_ID = 1001


class AccountApi:
    def __init__(self, store: StateStore, account_key: str, settings: LiveSettings | None = None) -> None:
        self.store = store
        self.account_key = account_key
        self.settings = settings or LiveSettings()

    def current_user(self, req: Request) -> Response:
        with self.store.lock:
            first_key = self.store.data.ssh_keys[0]["key"] if self.store.data.ssh_keys else ""
        user = {
            "id": USER_ID,
            "key_id": 1,
            "username": "emulator",
            "email": "emulator@localhost",
            "fullname": "Vast Emulator",
            "balance": 0.0,
            "credit": 100.0,
            "can_pay": True,
            "has_billing": True,
            "email_verified": True,
            "ssh_key": first_key,
            "sid": "emulator-session",
            "host_agreement_accepted": False,
            "balance_threshold": 5.0,
            "balance_threshold_enabled": False,
        }
        if req.caller.kind == "account":
            user["api_key"] = req.caller.key  # the real API returns it; the CLI drops it before printing
        return ok(user)

    def list_secrets(self, req: Request) -> Response:
        """Names with masked values, as Vast answers: a client cannot tell whether a value is current."""
        require_account(req)
        with self.store.lock:
            return ok({"success": True, "secrets": {name: MASK for name in self.store.data.secrets}})

    def clear_secrets(self) -> dict[str, str]:
        """The stored values (the emulator's admin view, GET /_emulator/secrets)."""
        with self.store.lock:
            return dict(self.store.data.secrets)

    def _secret_input(self, req: Request, need_value: bool) -> tuple[str, str | None]:
        body = body_object(req)
        key, value = body.get("key"), body.get("value")
        if not isinstance(key, str) or not key or (need_value and value is None):
            raise ApiError(400, "missing_input", "Both key and value are required" if need_value else "key is required")
        key = key.upper()
        if not SECRET_NAME.match(key):
            raise ApiError(400, "invalid_characters", f"Key {key!r} may contain only letters, digits and _")
        if need_value:
            value = str(value)
            if value == "":
                raise ApiError(400, "empty_input", "value must not be empty")
            if len(value) > MAX_SECRET_VALUE or len(key) > 256:
                raise ApiError(400, "input_too_long", f"value must be at most {MAX_SECRET_VALUE} characters")
            if "\n" in value or "\0" in value:
                raise ApiError(400, "invalid_characters", "value must be one line")
            if self.settings.strict_env_values and not SECRET_VALUE.match(value):
                raise ApiError(400, "invalid_characters",
                               f"Value of {key} may contain only letters, digits, _, - and . (^[a-zA-Z0-9_\\-\\.]+$)")
        return key, value

    def create_secret(self, req: Request) -> Response:
        require_account(req)
        key, value = self._secret_input(req, need_value=True)
        with self.store.lock:
            secrets = self.store.data.secrets
            if key in secrets:
                raise ApiError(400, "existing_key", f"Environment variable {key} already exists; update it instead")
            if len(secrets) >= MAX_SECRETS:
                raise ApiError(400, "max_secrets", f"At most {MAX_SECRETS} environment variables per account")
            secrets[key] = value
            self.store.save()
        return ok({"success": True, "msg": "Environment variable added successfully"})

    def update_secret(self, req: Request) -> Response:
        require_account(req)
        key, value = self._secret_input(req, need_value=True)
        with self.store.lock:
            if key not in self.store.data.secrets:
                raise ApiError(400, "nonexistent_key", f"Environment variable {key} does not exist")
            self.store.data.secrets[key] = value
            self.store.save()
        return ok({"success": True, "msg": "Environment variable updated successfully"})

    def delete_secret(self, req: Request) -> Response:
        require_account(req)
        key, _ = self._secret_input(req, need_value=False)
        with self.store.lock:
            if key not in self.store.data.secrets:
                raise ApiError(400, "nonexistent_key", f"Environment variable {key} does not exist")
            del self.store.data.secrets[key]
            self.store.save()
        return ok({"success": True, "msg": "Environment variable deleted successfully"})

    def list_ssh_keys(self, req: Request) -> Response:
        require_account(req)
        with self.store.lock:
            return ok([dict(k) for k in self.store.data.ssh_keys])

    def create_ssh_key(self, req: Request) -> Response:
        require_account(req)
        if req.caller.team:
            # skypilot PRs #9631, #10730: team-scoped keys cannot create account SSH keys.
            raise ApiError(400, "team_ssh_keys_not_supported",
                           "SSH keys cannot be added with a team API key; attach the key to the instance instead "
                           "(POST /api/v0/instances/{id}/ssh/)")
        key = public_key(body_object(req).get("ssh_key"))
        with self.store.lock:
            data = self.store.data
            entry = {
                "id": data.next_ssh_key_id,
                "user_id": USER_ID,
                "key": key,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "deleted_at": None,
            }
            data.next_ssh_key_id += 1
            data.ssh_keys.append(entry)
            self.store.save()
        public = {k: v for k, v in entry.items() if k != "key"} | {"public_key": key}
        return ok({"success": True, "key": public})

    def _ssh_key_entry(self, key_id: int) -> dict[str, Any]:
        for entry in self.store.data.ssh_keys:
            if entry["id"] == key_id:
                return entry
        raise ApiError(404, "no_such_key", f"SSH key {key_id} not found")

    def update_ssh_key(self, req: Request) -> Response:
        require_account(req)
        key = public_key(body_object(req).get("ssh_key"))
        with self.store.lock:
            self._ssh_key_entry(int(req.params["id"]))["key"] = key
            self.store.save()
        return ok({"success": True})

    def delete_ssh_key(self, req: Request) -> Response:
        require_account(req)
        with self.store.lock:
            entry = self._ssh_key_entry(int(req.params["id"]))
            self.store.data.ssh_keys.remove(entry)
            self.store.save()
        return ok({"success": True, "msg": "SSH key deleted"})


def public_key(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "no_ssh_key", "ssh_key is required: an OpenSSH public key such as 'ssh-ed25519 AAAA... me@host'")
    value = value.strip()
    if "PRIVATE KEY" in value or not PUBLIC_KEY.match(value):
        raise ApiError(400, "invalid_ssh_key", "ssh_key must be one OpenSSH public key line ('ssh-ed25519 AAAA... comment')")
    return value
