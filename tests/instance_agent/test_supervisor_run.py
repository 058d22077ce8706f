"""The supervisor's real paths: a real child process (signals, process group, output), real rclone against
moto's S3 server on loopback, the heartbeat on disk. The pipeline is a small scripted stand-in here, so that
success, crash, hang and signals can each be provoked; the real pipeline runs in tests/e2e. The supervisor
never ends the billing itself: it hands over to the agent with heartbeat phase `ending` (test_agent.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from instance_agent import heartbeat as hb
from instance_agent.datafetch import DataFetchError, DataSpec, fetch_data
from instance_agent.pipeline import PipelineProcess
from instance_agent.policy import policy_from_dict
from instance_agent.rclone import Bucket
from instance_agent.started import NotStartedError, wait_started
from instance_agent.supervisor import Supervisor, SupervisorBusyError
from tools.s3server import running_s3_server

# A stand-in pipeline: prints the contract's markers, writes status, a stage log, a checkpoint; then behaves
# as $FAKE_MODE says (ok | crash | hang).
FAKE_PIPELINE = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    run = Path(os.environ["TRAIN_RUN_DIR"])
    (run / "logs").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints" / "operator").mkdir(parents=True, exist_ok=True)
    print("PIPELINE STARTED run=%s stages=operator wandb=offline:/w" % os.environ["TRAIN_RUN_NAME"], flush=True)
    (run / "logs" / "operator.log").write_text("step 1 loss 0.5\\n")
    (run / "checkpoints" / "operator" / "last.pt").write_bytes(b"ckpt")
    (run / "status.json").write_text(json.dumps({"stage": "operator", "step": 7, "total_steps": 10}))
    (run / "metrics").mkdir(exist_ok=True)
    (run / "metrics" / "metrics.json").write_text('{"rel_l2": 0.1}')
    mode = os.environ.get("FAKE_MODE", "ok")
    if mode == "killed_once" and not (run / "killed-once").exists():
        (run / "killed-once").write_text("x")
        os.kill(os.getpid(), 9)  # as kill -9 or the OOM killer would: no failure line
    if mode == "hang_ignoring_term":
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    if mode == "crash":
        print("PIPELINE FAILED stage=operator: injected crash", flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(600)
    print("PIPELINE FINISHED ok", flush=True)
""")


@pytest.fixture(scope="module")
def s3():
    with running_s3_server(bucket="supervisor-tests") as server:
        yield server


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "fake_pipeline.py").write_text(FAKE_PIPELINE)
    return tmp_path


def make_supervisor(code_dir: Path, s3, mode: str, *, created_at: float | None = None, **policy_over) -> Supervisor:
    policy = policy_from_dict({
        "run_name": f"run-{mode}", "train_config": "configs/tiny.yaml", "code_dir": str(code_dir),
        "heartbeat_every_s": 0.2, "sync_every_s": 0.0, "stop_grace_s": 2.0, "dph": 1.0,
        "pipeline_env": {"FAKE_MODE": mode}, **policy_over,
    })
    environ = {**os.environ, **s3.b2_env(), "CONTAINER_ID": "1", "CONTAINER_API_KEY": "instance-key"}
    return Supervisor(policy, environ=environ, command=[sys.executable, str(code_dir / "fake_pipeline.py")],
                      echo=None, created_at=created_at, sleep=lambda _s: None)


def test_success_syncs_everything_then_hands_over(code_dir, s3):
    assert make_supervisor(code_dir, s3, "ok").run() == 0
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert (beat.state, beat.phase, beat.exit_code, beat.synced) == ("succeeded", "ending", 0, True)
    assert beat.pipeline_started and beat.wandb_url == "offline:/w" and (beat.stage, beat.step) == ("operator", 7)
    keys = s3.keys("runs/run-ok/")
    for key in ("logs/operator.log", "logs/pipeline.log", "checkpoints/operator/last.pt", "metrics/metrics.json",
                "status.json", "heartbeat.json"):
        assert f"runs/run-ok/{key}" in keys
    assert not any("fake_pipeline" in k for k in keys)  # code is not an artifact
    synced = json.loads(s3.read("runs/run-ok/heartbeat.json"))
    assert synced["state"] == "succeeded"


def test_crash_still_syncs_logs(code_dir, s3):
    assert make_supervisor(code_dir, s3, "crash").run() == 10
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert beat.state == "failed" and beat.exit_code == 3 and beat.synced
    assert beat.error == "stage operator: injected crash"
    assert b"injected crash" in s3.read("runs/run-crash/logs/pipeline.log")


def test_runtime_budget_stops_a_hung_pipeline(code_dir, s3):
    started = time.monotonic()
    assert make_supervisor(code_dir, s3, "hang", max_runtime_hours=0.0005).run() == 11  # 1.8 s
    assert time.monotonic() - started < 30
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert beat.state == "budget_exceeded" and "max_runtime_hours=0.0005 exceeded" in beat.error
    assert "runs/run-hang/logs/operator.log" in s3.keys("runs/run-hang/")


def test_budget_counts_from_the_instance_creation_not_from_this_start(code_dir, s3):
    """A supervisor restarted (or relaunched) after the ceiling does not start the pipeline again."""
    created = time.time() - 7200  # two hours ago; the budget is one hour
    assert make_supervisor(code_dir, s3, "ok", created_at=created, max_runtime_hours=1.0).run() == 11
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert beat.state == "budget_exceeded" and not beat.pipeline_started
    assert beat.created_at == created and beat.cost_so_far >= 2.0  # $1/h for two hours, from creation
    assert beat.synced


def test_cost_budget(code_dir, s3):
    sup = make_supervisor(code_dir, s3, "hang", dph=3600.0, max_cost=1.5)  # $1/s: stops at ~1.5 s
    assert sup.run() == 11
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert beat.state == "budget_exceeded" and "max_cost=$1.5 reached" in beat.error and beat.cost_so_far >= 1.5


def test_a_failed_final_sync_is_retried_and_reported(code_dir, s3):
    sup = make_supervisor(code_dir, s3, "ok", final_sync_attempts=2, sync_timeout_s=3.0)
    sup.environ["B2_S3_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: the bucket is unreachable
    sup._bucket = None
    sleeps: list[float] = []
    sup.sleep = sleeps.append
    assert sup.run() == 20  # the pipeline succeeded ...
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert beat.state == "succeeded" and beat.synced is False and "no answer within 3s" in beat.sync_error
    assert sleeps == [5.0]  # ... the sync was tried twice, and the agent will stop (not destroy) the instance


def test_sigterm_interrupts_and_syncs(code_dir, s3):
    sup = make_supervisor(code_dir, s3, "hang")
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert sup.run() == 12
    finally:
        timer.cancel()
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert (beat.state, beat.phase, beat.stop_reason, beat.synced) == ("interrupted", "ending", "SIGTERM", True)
    assert "runs/run-hang/heartbeat.json" in s3.keys("runs/run-hang/")


def test_missing_bucket_config_fails_before_the_pipeline(code_dir, s3):
    sup = make_supervisor(code_dir, s3, "ok")
    sup.environ.pop("B2_APP_KEY")
    assert sup.run() == 30
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert beat.state == "failed" and "missing B2_APP_KEY" in beat.error and not beat.pipeline_started
    assert beat.synced is False  # nothing could be saved: the agent stops the instance, it never bills unattended


def test_second_supervisor_is_refused(code_dir, s3):
    sup = make_supervisor(code_dir, s3, "hang")
    with sup._lock(), pytest.raises(SupervisorBusyError, match="already runs"):
        make_supervisor(code_dir, s3, "hang").run()


def test_the_pipeline_dies_with_a_killed_supervisor(tmp_path: Path):
    """kill -9 of the supervisor: its pipeline (own session) gets SIGTERM at once instead of running on."""
    script = tmp_path / "hang.py"
    script.write_text("import time\nprint('pid', flush=True)\ntime.sleep(600)\n")
    parent = tmp_path / "parent.py"
    parent.write_text(textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from instance_agent.pipeline import PipelineProcess
        proc = PipelineProcess([sys.executable, {str(script)!r}], env=os.environ, cwd=Path({str(tmp_path)!r}),
                               log_path=Path({str(tmp_path / "p.log")!r}))
        proc.start()
        print(proc.pid, flush=True)
        time.sleep(600)
    """))
    import subprocess
    sup = subprocess.Popen([sys.executable, str(parent)], stdout=subprocess.PIPE, text=True)
    try:
        pipeline_pid = int(sup.stdout.readline())
        assert _alive(pipeline_pid)
        sup.kill()
        sup.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(pipeline_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pipeline_pid)
    finally:
        sup.kill()


def test_terminate_reaches_the_whole_process_group(tmp_path: Path):
    script = tmp_path / "tree.py"
    # The child spawns a grandchild that ignores nothing; both must be gone after terminate().
    script.write_text("import subprocess, sys, time\n"
                      "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
                      "print('grandchild', p.pid, flush=True)\ntime.sleep(600)\n")
    proc = PipelineProcess([sys.executable, str(script)], env=os.environ, cwd=tmp_path, log_path=tmp_path / "p.log")
    proc.start()
    deadline = time.monotonic() + 20
    while "grandchild" not in (tmp_path / "p.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    grandchild = int((tmp_path / "p.log").read_text().split()[1])
    assert proc.terminate(grace_s=5) == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_wait_started(tmp_path: Path):
    path = tmp_path / "heartbeat.json"
    beat = hb.Heartbeat(pid=1, run_name="r", started_at="t", updated_at="t", state="running")
    hb.write_heartbeat(path, beat)
    with pytest.raises(NotStartedError, match="did not print PIPELINE STARTED within 0s"):
        wait_started(path, tmp_path / "p.log", timeout=0.3, poll=0.1)
    beat.state, beat.error = "failed", "stage cache: boom"
    hb.write_heartbeat(path, beat)
    (tmp_path / "p.log").write_text("Traceback: boom\n")
    with pytest.raises(NotStartedError, match="(?s)ended \\(failed\\).*boom.*Traceback: boom"):
        wait_started(path, tmp_path / "p.log", timeout=5)
    beat.pipeline_started, beat.wandb_url = True, "https://wandb.ai/x"
    hb.write_heartbeat(path, beat)
    assert wait_started(path, tmp_path / "p.log", timeout=5).wandb_url == "https://wandb.ai/x"


class TestFetchData:
    PREFIX = "datasets/fetch-test"

    @pytest.fixture
    def bucket(self, s3, request):
        name = f"fetch-{request.node.name.replace('_', '-')[:40].lower()}"
        s3.create_bucket(name)
        return Bucket.from_env(s3.b2_env(bucket=name))

    def upload(self, s3, bucket: Bucket, files: dict[str, bytes], manifest: bool = True) -> None:
        import hashlib
        client = s3.client()
        for name, data in files.items():
            client.put_object(Bucket=bucket.name, Key=f"{self.PREFIX}/{name}", Body=data)
        if manifest:
            entries = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in files.items()}
            client.put_object(Bucket=bucket.name, Key=f"{self.PREFIX}/manifest.json",
                              Body=json.dumps({"files": entries}).encode())

    def spec(self, *names: str) -> DataSpec:
        return DataSpec(self.PREFIX, {n: "data.train" for n in names})

    def test_fetches_once_then_skips_and_refetches_corrupt(self, s3, bucket, tmp_path):
        self.upload(s3, bucket, {"a.h5": b"a" * 5000, "b.h5": b"b" * 7000})
        first = fetch_data(bucket, self.spec("a.h5", "b.h5"), tmp_path)
        assert sorted(first.fetched) == ["a.h5", "b.h5"] and first.bytes_fetched == 12000
        assert (tmp_path / "b.h5").read_bytes() == b"b" * 7000
        second = fetch_data(bucket, self.spec("a.h5", "b.h5"), tmp_path)
        assert second.fetched == [] and sorted(second.present) == ["a.h5", "b.h5"]
        (tmp_path / "a.h5").write_bytes(b"x" * 5000)  # same size, wrong bytes
        third = fetch_data(bucket, self.spec("a.h5", "b.h5"), tmp_path)
        assert third.fetched == ["a.h5"] and (tmp_path / "a.h5").read_bytes() == b"a" * 5000

    def test_missing_object_names_bucket_key_and_config_key(self, s3, bucket, tmp_path):
        self.upload(s3, bucket, {"a.h5": b"a"})
        with pytest.raises(DataFetchError) as info:
            fetch_data(bucket, DataSpec(self.PREFIX, {"a.h5": "data.train", "z.h5": "data.test"}), tmp_path)
        message = str(info.value)
        assert f"s3://{bucket.name}/{self.PREFIX}/z.h5 (listed in data.test)" in message
        assert "a.h5" in message and "--upload" in message

    def test_manifest_mismatch_is_an_error(self, s3, bucket, tmp_path):
        self.upload(s3, bucket, {"a.h5": b"a" * 10})
        s3.client().put_object(Bucket=bucket.name, Key=f"{self.PREFIX}/a.h5", Body=b"c" * 10)  # stale manifest
        with pytest.raises(DataFetchError, match="differs from the bucket's manifest"):
            fetch_data(bucket, self.spec("a.h5"), tmp_path)
        assert not (tmp_path / "a.h5").exists()

    def test_without_manifest_uses_the_bucket_md5(self, s3, bucket, tmp_path):
        self.upload(s3, bucket, {"a.h5": b"a" * 10}, manifest=False)
        assert fetch_data(bucket, self.spec("a.h5"), tmp_path).checked_with == "md5"
        again = fetch_data(bucket, self.spec("a.h5"), tmp_path)
        assert again.fetched == [] and again.present == ["a.h5"]


def test_sync_while_the_pipeline_writes(tmp_path: Path, s3):
    """Files that grow or are rewritten during an upload (logs, status, W&B) reach the bucket whole: the sync
    uploads a snapshot, not the live files (rclone fails a file that changes under it with an md5 mismatch)."""
    from instance_agent.artifacts import sync_artifacts
    (tmp_path / "logs").mkdir()
    (tmp_path / "checkpoints" / "operator").mkdir(parents=True)
    log = tmp_path / "logs" / "operator.log"
    log.write_bytes(b"step 0 loss 1.0\n" * 200_000)
    (tmp_path / "checkpoints" / "operator" / "last.pt").write_bytes(os.urandom(1 << 20))
    (tmp_path / "checkpoints" / "operator" / ".last.pt.abc.tmp").write_bytes(b"half-written")
    (tmp_path / "status.json").write_text(json.dumps({"step": 0}))
    stop = threading.Event()

    def write_like_a_pipeline() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            with log.open("ab") as handle:
                handle.write(b"step %d loss 0.5\n" % step * 50)
            temp = tmp_path / f".status.json.{step}.tmp"  # rewritten atomically, as the pipeline does
            temp.write_text(json.dumps({"step": step, "pad": "x" * 50_000}))
            os.replace(temp, tmp_path / "status.json")

    writer = threading.Thread(target=write_like_a_pipeline, daemon=True)
    writer.start()
    try:
        bucket = Bucket.from_env(s3.b2_env())
        for attempt in range(3):
            report = sync_artifacts(bucket, tmp_path, f"runs/live-{attempt}")
            assert report.checkpoints
    finally:
        stop.set()
        writer.join()
    final_log = log.read_bytes()
    for attempt in range(3):
        synced = s3.read(f"runs/live-{attempt}/logs/operator.log")
        assert len(synced) >= 200_000 * 16 and final_log.startswith(synced)
        assert json.loads(s3.read(f"runs/live-{attempt}/status.json"))["step"] >= 0
    keys = s3.keys("runs/live-0/")
    assert "runs/live-0/checkpoints/operator/last.pt" in keys
    assert not any(k.endswith(".tmp") for k in keys)  # an atomic writer's work in progress is not an artifact


def test_sync_without_room_for_a_snapshot_copies_the_live_files(tmp_path: Path, s3, monkeypatch):
    """A full disk leaves no room for the snapshot: the sync still gets the artifacts out (and no dotfiles)."""
    from instance_agent import artifacts
    for name in ("logs/pipeline.log", "checkpoints/operator/last.pt", "checkpoints/operator/.x.tmp",
                 "status.json", "training/code.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)

    def no_space(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "snapshot_artifacts", no_space)
    report = artifacts.sync_artifacts(Bucket.from_env(s3.b2_env()), tmp_path, "runs/full-disk")
    assert report.files == 3
    assert s3.keys("runs/full-disk/") == ["runs/full-disk/checkpoints/operator/last.pt",
                                          "runs/full-disk/logs/pipeline.log", "runs/full-disk/status.json"]


def test_a_pipeline_killed_by_a_signal_is_restarted_and_resumes(code_dir, s3):
    assert make_supervisor(code_dir, s3, "killed_once").run() == 0
    beat = hb.read_heartbeat(code_dir / "heartbeat.json")
    assert (beat.state, beat.pipeline_restarts, beat.exit_code) == ("succeeded", 1, 0)


def test_the_outage_proxy_forwards_faithfully_and_fails_one_prefix(tmp_path: Path, s3):
    """tools.s3outage (the e2e world's bucket endpoint): rclone syncs through it intact; an outage hits one
    run's prefix only."""
    import dataclasses

    from instance_agent.artifacts import sync_artifacts
    from instance_agent.rclone import RcloneError
    from tools.s3outage import outage_proxy
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_bytes(os.urandom(300_000))
    with outage_proxy(s3.endpoint) as proxy:
        via = dataclasses.replace(s3, endpoint=proxy.endpoint)
        bucket = Bucket.from_env(via.b2_env())
        sync_artifacts(bucket, tmp_path, "runs/via-proxy")
        assert s3.read("runs/via-proxy/logs/a.log") == (tmp_path / "logs" / "a.log").read_bytes()
        proxy.fail("runs/down/")
        with pytest.raises(RcloneError):
            sync_artifacts(bucket, tmp_path, "runs/down", timeout=20)
        sync_artifacts(bucket, tmp_path, "runs/up")  # other runs are not affected
        assert proxy.failed_requests > 0 and "runs/up/logs/a.log" in s3.keys("runs/up/")
