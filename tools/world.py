"""A whole local stand-in for the cloud: the Vast.ai emulator, an S3 server for the B2 bucket, an SSH key, and
the account env-vars a real user sets once. The demo, the e2e tests and the launch benchmarks drive the real
playbooks against it, as a user would:

    with local_world(Path("/tmp/w")) as world:
        world.setup_env()                                   # ansible-playbook playbooks/setup_env.yml
        world.upload_dataset("configs/tiny.yaml", samples=40, resolution=32, frames=11)
        world.launch("tiny", run_name="r1")                 # ansible-playbook playbooks/launch.yml -e config=tiny
        world.wait_gone("r1")

Every process it starts is stopped on exit, also on errors and Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tools.s3outage import OutageProxy, outage_proxy
from tools.s3server import S3Server, free_port, running_s3_server, stop_process
from vast_emulator.testing import (
    EmulatorHandle,
    SshKeyPair,
    connect_ssh,
    make_ssh_keypair,
    running_emulator,
    ssh_run,
)

REPO = Path(__file__).resolve().parents[1]
BUCKET = "universal-simulator"
# Lines of ansible-playbook output that a person following a launch does not need to see scroll by.
_QUIET_PREFIXES = ("TASK [", "ok: [", "skipping: [", "included: ", "changed: [")


def _sentinel(kind: str, length: int = 0) -> str:
    """A fresh, distinctive value per world: found anywhere, it can only have leaked from there."""
    value = f"sentinel0{kind}0{secrets.token_hex(12)}"
    return value.ljust(length, "0") if length else value


@dataclass(frozen=True)
class Secrets:
    """The credentials of the local world: made up when the world starts, so a test can prove they leak nowhere."""

    vast_api_key: str = field(default_factory=lambda: _sentinel("vast"))
    b2_key_id: str = field(default_factory=lambda: _sentinel("b2keyid"))
    b2_app_key: str = field(default_factory=lambda: _sentinel("b2appkey"))
    wandb_api_key: str = field(default_factory=lambda: _sentinel("wandb", 40))  # 40 chars, like a real one

    def values(self) -> list[str]:
        return [self.vast_api_key, self.b2_key_id, self.b2_app_key, self.wandb_api_key]


@dataclass
class LocalWorld:
    root: Path
    emulator: EmulatorHandle
    s3: S3Server
    keys: SshKeyPair
    secrets: Secrets
    git_url: str  # this checkout, served over git:// on loopback: the "origin" instances clone from
    outage: OutageProxy | None = None  # the bucket's endpoint: B2 outages for one run's prefix on demand
    python: str = sys.executable
    log: object = field(default=print, repr=False)

    # -- environment of the controller (the user's shell) ---------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        """The controller's environment: the Vast key and URL, the B2 values setup_env.yml pushes, W&B offline."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAST_", "B2_", "WANDB_", "ANSIBLE_"))}
        env.update({
            "VAST_URL": self.emulator.url,
            "VAST_API_KEY": self.secrets.vast_api_key,
            **self.s3.b2_env(),
            "WANDB_API_KEY": self.secrets.wandb_api_key,
            "WANDB_PROJECT": "universal-simulator-demo",
            "WANDB_ENTITY": "local",
            "PYTHONUNBUFFERED": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
        })
        env.update(extra)
        return env

    def playbook(self, name: str, *args: str, check: bool = True, stream: bool = False,
                 timeout: float = 900) -> subprocess.CompletedProcess:
        """`ansible-playbook playbooks/<name> ARGS` from the repo root; output captured, and with `stream`
        echoed without the per-task lines (plays, messages, warnings, errors and the recap remain)."""
        command = [str(Path(self.python).parent / "ansible-playbook"), f"playbooks/{name}", *args]
        with subprocess.Popen(command, cwd=REPO, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, stdin=subprocess.DEVNULL) as proc:
            lines = []
            deadline = time.monotonic() + timeout
            for line in proc.stdout:
                lines.append(line)
                if stream and line.strip() and not line.startswith(_QUIET_PREFIXES):
                    self.log(line.rstrip("\n"))
                if time.monotonic() > deadline:
                    proc.kill()
                    break
            code = proc.wait()
        result = subprocess.CompletedProcess(command, code, "".join(lines), "")
        if check and code != 0:
            raise RuntimeError(f"ansible-playbook {name} failed (exit {code}):\n{result.stdout[-6000:]}")
        return result

    # -- what a user does ------------------------------------------------------------------------------------

    def setup_env(self) -> subprocess.CompletedProcess:
        """Push the credentials into the account's env-vars (the real setup_env.yml), plus WANDB_MODE=offline."""
        result = self.playbook("setup_env.yml")
        # No network here: W&B runs offline on the instances (a real account would not set this).
        self.api().put_env_var("WANDB_MODE", "offline")
        return result

    def launch_args(self, config: str, run_name: str, *extra: str, code_source: str = "local") -> list[str]:
        # A developer's work in progress (WORLD_ALLOW_DIRTY=1) trains the committed HEAD; CI's clone is clean.
        dirty = ["-e", "allow_dirty=true"] if code_source == "git" and os.environ.get("WORLD_ALLOW_DIRTY") else []
        return ["-e", f"config={config}", "-e", f"run_name={run_name}", "-e", f"code_source={code_source}",
                "-e", f"code_repo={self.git_url}", "-e", f"ssh_key_file={self.keys.private_key}",
                "-e", f"known_hosts_dir={self.root / 'known_hosts'}", "-e", "poll_interval=0.5", *self.ssh_config_args(),
                *dirty, *extra]

    def ssh_config_args(self) -> list[str]:
        """`ssh <run>` entries go to the world's own SSH config (`ssh -F <root>/ssh_config <run>`), never ~/.ssh."""
        return ["-e", f"ssh_config_dir={self.root / 'ssh_entries'}", "-e", f"ssh_config_file={self.root / 'ssh_config'}"]

    def launch(self, config: str, run_name: str, *extra: str, code_source: str = "local", check: bool = True,
               stream: bool = False) -> subprocess.CompletedProcess:
        """`ansible-playbook playbooks/launch.yml -e config=CONFIG -e run_name=RUN ...` (plus the world's key)."""
        return self.playbook("launch.yml", *self.launch_args(config, run_name, *extra, code_source=code_source),
                             check=check, stream=stream)

    def upload_dataset(self, config: str, *, samples: int, resolution: int, frames: int = 201,
                       frame_dt: float = 0.01, solver_resolution: int | None = None,
                       extra: Sequence[str] = ()) -> str:
        """Generate the config's data with the project's own solver and upload it (`python -m training data`)."""
        from training.config import load_config

        data = load_config(REPO / config).data
        out = self.root / "dataset" / data.remote_prefix.replace("/", "_")
        command = [self.python, "-m", "training", "data", "--nu", f"{data.nu:g}", "--samples", str(samples),
                   "--resolution", str(resolution), "--frames", str(frames), "--frame-dt", f"{frame_dt:g}",
                   "--out", str(out), "--upload", "--prefix", data.remote_prefix, *extra]
        if solver_resolution:
            command += ["--solver-resolution", str(solver_resolution)]
        done = subprocess.run(command, cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"generating the dataset failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return data.remote_prefix

    # -- looking at what happened ----------------------------------------------------------------------------

    def api(self):
        from vastkit.client import VastAPI

        return VastAPI.from_env(api_key=self.secrets.vast_api_key, url=self.emulator.url)

    def instances(self, run_name: str) -> list[dict]:
        """The run's instances as API rows (the emulator shows destroyed ones no more)."""
        return [instance.raw for instance in self.api().list_instances(label=run_name)]

    def instance(self, run_name: str) -> dict | None:
        rows = self.instances(run_name)
        return rows[0] if rows else None

    def wait_gone(self, run_name: str, timeout: float = 600, poll: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while self.instances(run_name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_name}: its instance still exists after {timeout:.0f}s")
            time.sleep(poll)

    def ssh(self, run_name: str, command: str, timeout: float = 60) -> tuple[int, str, str]:
        row = self.instance(run_name)
        if row is None:
            raise RuntimeError(f"run {run_name} has no instance")
        client = connect_ssh(row, self.keys.private_key)
        try:
            return ssh_run(client, command, timeout=timeout)
        finally:
            client.close()

    def heartbeat(self, run_name: str) -> dict | None:
        """The run's heartbeat: from the instance while it lives, else the copy synced to the bucket."""
        if self.instance(run_name):
            try:
                code, out, _ = self.ssh(run_name, "cat /workspace/universal_simulator/heartbeat.json", timeout=15)
                if code == 0:
                    return json.loads(out)
            except Exception:  # noqa: BLE001 - going away (paramiko's SSHException mid-destroy, EOF): try the bucket
                pass
        try:
            return json.loads(self.s3.read(f"runs/{run_name}/heartbeat.json"))
        except Exception:  # noqa: BLE001 - not there (yet): the caller polls
            return None

    def artifacts(self, run_name: str) -> list[str]:
        prefix = f"runs/{run_name}/"
        return [key[len(prefix):] for key in self.s3.keys(prefix)]


@contextmanager
def local_world(root: Path, *, log=print, credentials: Secrets | None = None, copies: int = 1) -> Iterator[LocalWorld]:
    """Start the emulator and the S3 server under `root`; stop both on exit, whatever happens.

    `copies` > 1 multiplies the emulator's market (each offer on that many machines): the e2e session runs
    a score of runs side by side, more than the packaged catalogue has reliable machines for."""
    credentials = credentials or Secrets()
    root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        moto = stack.enter_context(running_s3_server(bucket=BUCKET, key_id=credentials.b2_key_id,
                                                     app_key=credentials.b2_app_key))
        # Everyone (instances, the controller, the tests) reaches the bucket through the outage proxy.
        outage = stack.enter_context(outage_proxy(moto.endpoint))
        s3 = dataclasses.replace(moto, endpoint=outage.endpoint)
        emulator = stack.enter_context(running_emulator(root / "emulator", loading_delay=0.3,
                                                        api_key=credentials.vast_api_key,
                                                        offers_file=_market(root, copies)))
        git_url = stack.enter_context(serving_git(REPO))
        keys = make_ssh_keypair(root / "ssh")
        (root / "known_hosts").mkdir(mode=0o700, exist_ok=True)
        yield LocalWorld(root=root, emulator=emulator, s3=s3, keys=keys, secrets=credentials, git_url=git_url,
                         outage=outage, log=log)


def _market(root: Path, copies: int) -> Path | None:
    if copies <= 1:
        return None
    from importlib import resources

    offers = json.loads(resources.files("vast_emulator").joinpath("data/offers.json").read_text())["offers"]
    market = [{**offer, "id": offer["id"] + 1_000_000 * n, "machine_id": offer["machine_id"] + 100_000 * n}
              for n in range(copies) for offer in offers]
    path = root / "offers.json"
    path.write_text(json.dumps({"offers": market}))
    return path


@contextmanager
def serving_git(repo: Path, start_timeout: float = 10.0) -> Iterator[str]:
    """`git daemon` serving `repo` read-only on a loopback port; yields its git:// URL.

    Instances have private /tmp and /root, so a checkout there is invisible to them as a path; over the
    network (loopback) they clone it the way a real instance clones from GitHub.
    """
    repo = repo.resolve()
    port = free_port()
    process = subprocess.Popen(
        ["git", "daemon", "--export-all", f"--base-path={repo.parent}", "--listen=127.0.0.1", f"--port={port}",
         "--reuseaddr", "--informative-errors", str(repo)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"git://127.0.0.1:{port}/{repo.name}"
    try:
        deadline = time.monotonic() + start_timeout
        while subprocess.run(["git", "ls-remote", url, "HEAD"], capture_output=True).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"git daemon did not serve {repo} on 127.0.0.1:{port}")
            time.sleep(0.1)
        yield url
    finally:
        stop_process(process)
