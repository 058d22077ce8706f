"""Assembles the emulator from its parts and runs it until stopped."""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from . import base_venv
from .admin import AdminApi, RequestLog
from .api_account import AccountApi
from .api_instances import InstanceApi
from .faults import FaultBook, parse_faults
from .http_server import EmulatorHTTPServer, Frontend
from .http_types import LiveSettings
from .instances import InstanceManager, RuntimeSettings
from .offers import Catalogue
from .ratelimit import RateLimiter
from .routes import build_routes
from .store import StateStore

API_KEY_ENV = "VAST_EMULATOR_API_KEY"


@dataclass(frozen=True)
class EmulatorConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    loading_delay_s: float = 2.0
    offers_file: Path | None = None
    faults_file: Path | None = None
    base_venv: Path | None = None
    uv_cache: Path | None = None
    rate_limit_scale: float = 1.0  # Vast's intervals times this; 0 turns the rate limits off
    strict_env_values: bool = False  # enforce the documented env-var value pattern


def account_key(state_dir: Path) -> str:
    """From $VAST_EMULATOR_API_KEY, else generated once into STATE_DIR/api_key (0600). Never a CLI argument."""
    from_env = os.environ.get(API_KEY_ENV)
    if from_env:
        return from_env.strip()
    path = state_dir / "api_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.key = account_key(config.state_dir)
        self.store = StateStore(config.state_dir)
        self.catalogue = Catalogue.load(config.offers_file)
        self.faults = FaultBook()
        self.request_log = RequestLog()
        self.base_ready = threading.Event()
        self.base_venv_path = Path(config.base_venv or base_venv.default_base_venv())
        self.base_venv_error: str | None = None
        self.server: EmulatorHTTPServer | None = None
        self.url = ""
        settings = RuntimeSettings(
            state_dir=config.state_dir,
            loading_delay_s=config.loading_delay_s,
            base_venv=self.base_venv_path,
            uv_cache=config.uv_cache,
            api_url=lambda: self.url,
        )
        self.manager = InstanceManager(self.store, self.catalogue, self.faults, settings, self.base_ready)
        self.live = LiveSettings(rate_limit_scale=config.rate_limit_scale, strict_env_values=config.strict_env_values)
        self.limiter = RateLimiter(config.rate_limit_scale)
        self.api = InstanceApi(self.store, self.catalogue, self.manager)
        self.account = AccountApi(self.store, self.key, self.live)
        self.admin = AdminApi(self.store, self.manager, self.faults, self.request_log, self.base_ready.is_set,
                              self.live, self.limiter, self.account.clear_secrets)

    def start(self) -> str:
        """Bind, write STATE_DIR/url, start instances that should run; returns the base URL."""
        if self.config.faults_file:
            for fault in parse_faults(json.loads(Path(self.config.faults_file).read_text())):
                self.admin.install(fault)
        routes = build_routes(self.api, self.account, self.admin)
        frontend = Frontend(routes, self.key, self.store, self.faults, self.request_log, self.limiter)
        self.server = EmulatorHTTPServer((self.config.host, self.config.port), frontend)
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}"
        threading.Thread(target=self._prepare_base_venv, name="base-venv", daemon=True).start()
        self.manager.restore()
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        (self.config.state_dir / "url").write_text(self.url + "\n")
        return self.url

    def _prepare_base_venv(self) -> None:
        try:
            base_venv.ensure_mountpoints()
            base_venv.ensure_base_venv(self.base_venv_path, log=lambda m: print(m, file=sys.stderr, flush=True))
            self.base_ready.set()
        except Exception as exc:  # instances stay in "loading"; say why, once, clearly
            self.base_venv_error = str(exc)
            print(f"vast_emulator: cannot prepare the base venv: {exc}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.manager.shutdown()
