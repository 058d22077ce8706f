"""Account env-vars on Vast's terms: the documented value pattern, and knowing a value is current without
reading it back (Vast masks every value on read).

- Values: `create_env_var.yaml` documents `^[a-zA-Z0-9_\\-\\.]+$`. Whether it is enforced is unknown, so what
  can be stored inside it is: `B2_S3_ENDPOINT=https://s3.us-west-004.backblazeb2.com` is stored as the bare
  host, which the instance side's one parser (`run_contract.bucket_settings`) reads back with `https://`.
  Anything else outside the pattern is sent as it is, with a warning: the API may refuse it.
- Idempotence: `GET /api/v0/secrets/` answers `********` for every value, so equality cannot be read. We keep,
  per API and key, an HMAC of each value this controller stored (keyed with the API key: without it the file
  says nothing about the values) in `~/.cache/vastkit/env-vars/`; a value whose HMAC matches is unchanged.
  A value changed elsewhere (the web console, another machine) is not seen: write with `force` then.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from pathlib import Path

VALUE_PATTERN = re.compile(r"^[a-zA-Z0-9_\-\.]+$")
VALUE_PATTERN_TEXT = r"^[a-zA-Z0-9_\-\.]+$"
ENDPOINT_NAMES = ("B2_S3_ENDPOINT",)
_HTTPS_HOST = re.compile(r"^https://([A-Za-z0-9.-]+)/?$")


def stored_value(name: str, value: str) -> str:
    """The value as it is stored: an https endpoint without a path or port becomes its bare host."""
    if name in ENDPOINT_NAMES:
        found = _HTTPS_HOST.match(value.strip())
        if found:
            return found.group(1)
    return value


def value_problem(name: str, value: str) -> str | None:
    """Why Vast may refuse the (stored) value of `name`, or None. Never quotes the value."""
    if VALUE_PATTERN.match(value):
        return None
    hint = " (an http:// endpoint or one with a port cannot be written as a bare host)" if name in ENDPOINT_NAMES else ""
    return (f"the value of {name} does not match Vast's documented env-var value pattern {VALUE_PATTERN_TEXT}"
            f"{hint}; the API may refuse it")


class ValueRecord:
    """HMACs of the values this controller stored, per API and key (a 0600 file under `directory`)."""

    def __init__(self, directory: Path, identity: str, api_key: str):
        self.path = Path(directory) / f"{identity}.json"
        self._key = api_key.encode()

    def digest(self, name: str, value: str) -> str:
        return hmac.new(self._key, f"{name}\0{value}".encode(), hashlib.sha256).hexdigest()

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def matches(self, name: str, value: str) -> bool:
        return hmac.compare_digest(self._load().get(name, ""), self.digest(name, value))

    def remember(self, name: str, value: str | None) -> None:
        """Record that `name` now holds `value` (None: deleted)."""
        data = self._load()
        if value is None:
            data.pop(name, None)
        else:
            data[name] = self.digest(name, value)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, self.path)


def default_record_dir(environ=None) -> Path:
    environ = os.environ if environ is None else environ
    home = Path(environ.get("HOME") or Path.home())
    return Path(environ.get("XDG_CACHE_HOME") or home / ".cache") / "vastkit" / "env-vars"
