"""Every rented GPU used: with nproc_per_node > 1 the supervisor starts the real pipeline under torchrun, one
process per GPU (here 2 CPU processes on gloo), and rank 0 alone writes. Through the real supervisor, rclone
against moto's S3 server, and real torch on a tiny config; the launch command itself is a pure decision.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from instance_agent import heartbeat as hb
from instance_agent.layout import PIPELINE_LOG
from instance_agent.pipeline import launch_command
from instance_agent.policy import PolicyError, SupervisorPolicy, policy_from_dict
from instance_agent.supervisor import Supervisor, pipeline_command
from tools.s3server import running_s3_server
from training.data.generate import GenerationSpec, generate_dataset

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/tiny_ddp.yaml"  # inside each test's code dir
JOINED = re.compile(r"^runtime: rank (\d) of 2 joined \(gloo, cpu, pid (\d+)\)$", re.MULTILINE)


# -- the decision: which command ------------------------------------------------------------------------------

def test_one_process_runs_the_pipeline_directly():
    policy = SupervisorPolicy(run_name="r", train_config="configs/tiny.yaml", python="/venv/main/bin/python")
    assert pipeline_command(policy) == ["/venv/main/bin/python", "-m", "training", "run", "--config",
                                        "configs/tiny.yaml", "--stage", "all"]


def test_more_processes_run_under_torchrun_without_its_own_restarts():
    policy = SupervisorPolicy(run_name="r", train_config="configs/tiny.yaml", python="py", nproc_per_node=4)
    assert pipeline_command(policy) == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
                                        "--max_restarts=0", "-m", "training", "run", "--config",
                                        "configs/tiny.yaml", "--stage", "all"]


@pytest.mark.parametrize(("value", "message"), [
    (0, "nproc_per_node: must be >= 1"), (-2, "nproc_per_node: must be >= 1"),
    (2.0, "nproc_per_node: expected int, got float"), (True, "nproc_per_node: expected int, got bool"),
])
def test_the_process_count_is_validated(value, message):
    with pytest.raises(PolicyError, match=message):
        policy_from_dict({"run_name": "r", "train_config": "configs/tiny.yaml", "nproc_per_node": value})
    with pytest.raises(ValueError, match="nproc_per_node must be >= 1"):
        launch_command("py", ["training"], nproc_per_node=0)


def test_the_default_is_one_process():
    assert policy_from_dict({"run_name": "r", "train_config": "configs/tiny.yaml"}).nproc_per_node == 1


def test_a_rank_dies_with_its_launcher(tmp_path):
    """torchrun's ranks run in sessions of their own, out of reach of the supervisor's signals to torchrun's
    group: when torchrun is killed (SIGKILL after the stop grace), each rank dies with it, holding no GPU
    and no run-dir lock. Here a stand-in launcher spawns a rank as torchrun does and is killed."""
    launcher = tmp_path / "launcher.py"
    launcher.write_text(textwrap.dedent("""
        import subprocess, sys, time
        rank = subprocess.Popen([sys.executable, "-c",
                                 "import time; from training.run.runtime import _die_with_launcher; "
                                 "_die_with_launcher(); print('ready', flush=True); time.sleep(600)"],
                                start_new_session=True, stdout=sys.stdout)
        print(rank.pid, flush=True)
        time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(launcher)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    rank_pid = None
    try:
        rank_pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        assert _alive(rank_pid)
        parent.kill()
        parent.wait(timeout=10)
        _wait_for(lambda: not _alive(rank_pid), 10, "the rank to die with its launcher")
    finally:
        parent.kill()
        if rank_pid and _alive(rank_pid):
            os.kill(rank_pid, signal.SIGKILL)


# -- the real thing ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3():
    with running_s3_server(bucket="torchrun-tests") as server:
        yield server


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny preset's files from the real generator (40 trajectories, 32 points, 11 frames)."""
    out = tmp_path_factory.mktemp("data")
    spec = GenerationSpec(nu=0.01, seed=0, resolution=32, solver_resolution=128, frames=11, frame_dt=0.05)
    generate_dataset(spec, 40, out)
    return out


def make_code_dir(root: Path, data: Path, stages: list[str] | None = None, **stage_updates: dict) -> Path:
    """A code dir as the supervisor sees one: the config inside it, data/ beside it."""
    raw = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    if stages:
        raw["stages"] = stages
    for stage, updates in stage_updates.items():
        raw[stage].update(updates)
    (root / "configs").mkdir(parents=True)
    (root / CONFIG).write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "data").symlink_to(data, target_is_directory=True)
    return root


def make_supervisor(code_dir: Path, s3, run_name: str, **policy_over) -> Supervisor:
    policy = policy_from_dict({
        "run_name": run_name, "train_config": CONFIG, "code_dir": str(code_dir), "python": sys.executable,
        "nproc_per_node": 2, "heartbeat_every_s": 0.5, "sync_every_s": 0.0, "stop_grace_s": 60.0,
        "pipeline_env": {"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}, **policy_over,
    })
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "B2_", "TRAIN_", "AWS_"))}
    environ.update({**s3.b2_env(), "CONTAINER_ID": "1", "CONTAINER_API_KEY": "instance-key"})
    return Supervisor(policy, environ=environ, echo=None, sleep=lambda _s: None)


def joined_ranks(log: str) -> dict[int, int]:
    """rank -> pid, from the line each rank prints once it is in the process group."""
    return {int(rank): int(pid) for rank, pid in JOINED.findall(log)}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


SHORT = {"steps": 4, "warmup_steps": 1, "ckpt_every": 2, "log_every": 2}


@pytest.mark.slow
def test_two_ranks_run_the_pipeline_and_rank_0_alone_writes(tmp_path, s3, tiny_data):
    """Two trained stages and the cache (rank 0 builds it, the others wait) of the tiny preset, 4 steps each."""
    code_dir = make_code_dir(tmp_path, tiny_data, ["autoencoder", "cache", "operator"], autoencoder=SHORT,
                             operator=SHORT)
    assert make_supervisor(code_dir, s3, "ddp-ok").run() == 0
    beat = hb.read_heartbeat(code_dir / hb.HEARTBEAT_NAME)
    log = (code_dir / PIPELINE_LOG).read_text()
    assert (beat.state, beat.exit_code, beat.synced, beat.pipeline_restarts) == ("succeeded", 0, True, 0), log[-3000:]
    ranks = joined_ranks(log)
    assert sorted(ranks) == [0, 1] and ranks[0] != ranks[1], log[-3000:]  # two processes, both in the group
    assert "runtime: device=cpu world_size=2" in log
    # The contract's lines, progress and the checkpoints come from rank 0 alone: once each.
    assert log.count("PIPELINE STARTED") == 1 and log.count("PIPELINE FINISHED ok") == 1
    assert "PIPELINE FAILED" not in log
    assert log.count("[operator] step 4/4 loss") == 1
    assert (code_dir / "logs" / "operator.log").read_text().count("[operator] step 4/4 loss") == 1
    for stage in ("autoencoder", "operator"):
        assert (code_dir / "checkpoints" / stage / "final.pt").is_file(), stage
        assert f"runs/ddp-ok/checkpoints/{stage}/final.pt" in s3.keys("runs/ddp-ok/")
    assert not list(code_dir.rglob("*.tmp"))  # no half-written file from a second writer
    stages = json.loads((code_dir / "metrics" / "stages.json").read_text())["stages"]
    assert list(stages) == ["autoencoder", "cache", "operator"] and stages["operator"]["steps"] == 4


@pytest.mark.slow
def test_sigterm_reaches_every_rank_and_rank_0_saves_where_all_stopped(tmp_path, s3, tiny_data):
    """The supervisor's SIGTERM goes to torchrun, which forwards it to both ranks; they agree on the step,
    rank 0 saves last.pt and reports it, and no rank outlives the run."""
    code_dir = make_code_dir(tmp_path, tiny_data, autoencoder={"steps": 100000, "log_every": 1000,
                                                               "ckpt_every": 100000})
    supervisor = make_supervisor(code_dir, s3, "ddp-term", train_stage="autoencoder")
    log_path = code_dir / PIPELINE_LOG
    pids: dict[int, int] = {}

    def stop_when_training() -> None:
        _wait_for(lambda: (hb.read_json(code_dir / "status.json") or {}).get("step", 0) >= 3, 240,
                  "autoencoder step 3")
        pids.update(joined_ranks(log_path.read_text()))
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=stop_when_training, daemon=True)
    watcher.start()
    assert supervisor.run() == 12
    watcher.join(timeout=5)
    beat = hb.read_heartbeat(code_dir / hb.HEARTBEAT_NAME)
    log = log_path.read_text()
    assert (beat.state, beat.stop_reason, beat.synced) == ("interrupted", "SIGTERM", True), log[-3000:]
    assert sorted(pids) == [0, 1], log[-3000:]
    failed = [line for line in log.splitlines() if line.startswith("PIPELINE FAILED")]
    assert len(failed) == 1, log[-3000:]
    saved = re.fullmatch(r"PIPELINE FAILED stage=autoencoder: Terminated: received SIGTERM; "
                         r"saved autoencoder/last.pt at step (\d+)", failed[0])
    assert saved, failed[0]
    import torch
    checkpoint = torch.load(code_dir / "checkpoints" / "autoencoder" / "last.pt", weights_only=True)
    assert checkpoint["step"] == int(saved.group(1)) >= 3
    assert "runs/ddp-term/checkpoints/autoencoder/last.pt" in s3.keys("runs/ddp-term/")
    assert not [rank for rank, pid in pids.items() if _alive(pid)]


@pytest.mark.slow
def test_a_rank_that_dies_fails_the_whole_run(tmp_path, s3, tiny_data):
    """kill -9 of rank 1 alone (as the OOM killer would): torchrun stops rank 0, the run fails, nothing is left."""
    code_dir = make_code_dir(tmp_path, tiny_data, autoencoder={"steps": 100000, "log_every": 1000,
                                                               "ckpt_every": 100000})
    supervisor = make_supervisor(code_dir, s3, "ddp-kill", train_stage="autoencoder")
    log_path = code_dir / PIPELINE_LOG
    pids: dict[int, int] = {}

    def kill_rank_1() -> None:
        _wait_for(lambda: (hb.read_json(code_dir / "status.json") or {}).get("step", 0) >= 3, 240,
                  "autoencoder step 3")
        pids.update(joined_ranks(log_path.read_text()))
        os.kill(pids[1], signal.SIGKILL)

    watcher = threading.Thread(target=kill_rank_1, daemon=True)
    watcher.start()
    code = supervisor.run()
    watcher.join(timeout=5)
    beat = hb.read_heartbeat(code_dir / hb.HEARTBEAT_NAME)
    log = log_path.read_text()
    assert code == 10 and beat.state == "failed" and beat.synced, log[-3000:]
    assert beat.exit_code not in (0, None) and beat.error, log[-3000:]
    assert "PIPELINE FINISHED" not in log
    assert re.search(r"exitcode\s*: -9", log), log[-3000:]  # torchrun names the rank that was killed
    assert not [rank for rank, pid in pids.items() if _alive(pid)]
