"""The day-2 commands against the real emulator (instances with a real sshd) and a real S3 server (moto):
`runs` lists a live run read over SSH beside a finished and a failed run read from the bucket, with cost and
staleness; `follow` tails a live run and switches to the bucket when its instance is destroyed; `results`
fetches metrics, plots and final checkpoints."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import run_contract as contract
from tools.s3server import S3Server, running_s3_server
from vast_emulator.testing import connect_ssh, ssh_run
from vastkit.__main__ import main
from vastkit.cost import InstanceCost, instance_cost, money
from vastkit.follow import Follower, FollowSettings
from vastkit.records import Instance
from vastkit.results import ResultsRequest, wanted
from vastkit.runs import Selector, Sources
from vastkit.runs_bucket import RunObject
from vastkit.runs_remote import SshSettings, _sections
from vastkit.runs_view import hmm, is_stale

OWNED = {contract.OWNER_ENV: contract.OWNER_VALUE}
STATUS = {
    "run_name": "day2-live",
    "stage": "operator",
    "step": 120,
    "total_steps": 400,
    "loss": 0.0123,
    "eta_s": 33,
    "state": "running",
    "error": None,
    "wandb_url": "https://wandb.ai/team/universal-simulator/runs/abc123",
}
METRICS_MD = "| method | nRMSE |\n|---|---|\n| operator | 0.0412 |\n"


# -- pure decisions --------------------------------------------------------------------------------


def test_eta_and_ages_read_as_hours_and_minutes_rounded_up():
    assert [hmm(s) for s in (None, 0, 33, 60, 61, 3600, 5 * 3600 + 59 * 60 + 1)] == [
        "-",
        "0:00",
        "0:01",
        "0:01",
        "0:02",
        "1:00",
        "6:00",
    ]


def test_cost_is_age_times_rate_and_the_disk_share_is_not_added_twice():
    cost = InstanceCost(age_s=7200, dph_total=0.5, storage_dph=0.05)
    assert cost.estimate == pytest.approx(1.0) and cost.gpu_dph == pytest.approx(0.45)
    assert money(cost.estimate) == "$1.00" and money(0.00012) == "$0.0001" and money(None) == "-"
    row = Instance.from_api(
        {"id": 1, "start_date": 1000.0, "dph_total": 0.36, "disk_space": 73.0, "storage_cost": 0.1}
    )
    found = instance_cost(row, now=1000.0 + 3600)
    assert found.estimate == pytest.approx(0.36) and found.storage_dph == pytest.approx(0.01)


@pytest.mark.parametrize(
    "given, message",
    [
        ({"run": ""}, "run is empty"),
        ({"label_prefix": " "}, "label_prefix is empty"),
        ({"run": "a", "instance_id": "3"}, "Give one selector"),
        ({"instance_id": "abc"}, "is no instance id"),
        ({"older_than": "6 hours"}, "expected a number and a unit"),
    ],
)
def test_bad_selectors_are_refused_with_the_fix(given, message):
    with pytest.raises(ValueError, match=message):
        Selector.parse(**given)


def test_a_run_selects_its_fleet_in_the_bucket_and_an_id_selects_no_bucket_run():
    sel = Selector.parse(run="r1")
    assert [n for n in ("r1", "r1-2", "r1-x", "r10") if sel.takes_name(n)] == ["r1", "r1-2"]
    assert not Selector.parse(instance_id=5).takes_name("r1")


def test_a_done_run_is_never_stale_and_a_quiet_live_one_is():
    assert is_stale({"phase": "pipeline"}, contract.STALE_HEARTBEAT_S + 1)
    assert not is_stale({"phase": "pipeline"}, contract.STALE_HEARTBEAT_S - 1)
    assert not is_stale({"phase": contract.PHASE_DONE}, 86400)


def test_the_ssh_reply_splits_into_sections_and_the_log_is_taken_whole():
    token = "abc123"
    mark = f"@@{token}@@"
    reply = (
        f'{mark}clock\n1700000000\n{mark}heartbeat\n{{"state": "running"}}\n{mark}status\n\n'
        f"{mark}log\nlogs/operator.log\n{mark}size\n42\n{mark}data\nstep 1\n@@other@@clock\n"
    )
    found = _sections(reply, token)
    assert found["clock"].strip() == "1700000000" and found["log"].strip() == "logs/operator.log"
    assert found["data"] == "step 1\n@@other@@clock\n"  # whatever a log holds stays in the log


def test_results_take_metrics_final_checkpoints_and_records_by_default():
    request = ResultsRequest(run="r1", into=Path("/tmp/r1"))
    keys = [
        "metrics/metrics.md",
        "metrics/a.png",
        "checkpoints/operator/final.pt",
        "checkpoints/operator/last.pt",
        "logs/operator.log",
        "wandb/offline-run-1/x",
        "heartbeat.json",
        "status.json",
    ]
    taken = [k for k in keys if wanted(RunObject(k, 1), request)]
    assert taken == [
        "metrics/metrics.md",
        "metrics/a.png",
        "checkpoints/operator/final.pt",
        "heartbeat.json",
        "status.json",
    ]
    with pytest.raises(ValueError, match="run name"):
        ResultsRequest(run="../etc", into=Path("/tmp/x"))


# -- the real path ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3_server(bucket="day2-default") as server:
        yield server


@pytest.fixture
def world(s3, emulator, ssh_keypair, tmp_path, monkeypatch, request):
    """The controller's environment for one test: its own bucket, the emulator's key, the test key."""
    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    s3.create_bucket(bucket)
    for name, value in {
        **s3.b2_env(bucket),
        "VAST_URL": emulator.url,
        "VAST_API_KEY": emulator.api_key,
    }.items():
        monkeypatch.setenv(name, value)
    ssh = ["--ssh-key", str(ssh_keypair.private_key), "--known-hosts-dir", str(tmp_path / "known_hosts")]
    return {"bucket": bucket, "ssh": ssh, "known_hosts": tmp_path / "known_hosts"}


def _put(s3: S3Server, bucket: str, run: str, key: str, body: bytes | str | dict, sha256: str | None = None):
    data = (
        json.dumps(body).encode()
        if isinstance(body, dict)
        else body.encode()
        if isinstance(body, str)
        else body
    )
    extra = {"Metadata": {"sha256": sha256}} if sha256 else {}
    s3.client().put_object(Bucket=bucket, Key=f"runs/{run}/{key}", Body=data, **extra)


def _final_beat(run: str, state: str, cost: float, **more) -> dict:
    now = time.time()
    return {
        "run_name": run,
        "state": state,
        "phase": "done",
        "stage": "evaluate",
        "step": 20,
        "total_steps": 20,
        "dph": 0.3,
        "cost_so_far": cost,
        "created_at": now - 3600,
        "updated_epoch": now - 1800,
        "elapsed_s": 1700.0,
        "ending": "destroyed",
        "ending_reason": f"run {state}",
        **more,
    }


def _rent(emulator, label: str, owned: bool = True) -> dict:
    return emulator.wait_status(emulator.launch(label=label, **({"env": OWNED} if owned else {})), "running")


def _write(row: dict, key: Path, files: dict[str, str], append: bool = False) -> float:
    """Write (or append to) files under the code dir over SSH; returns the instance's clock."""
    script = [f"mkdir -p {contract.CODE_DIR}/logs"]
    for name, text in files.items():
        encoded = base64.b64encode(text.encode()).decode()
        script.append(f"echo {encoded} | base64 -d {'>>' if append else '>'} {contract.CODE_DIR}/{name}")
    client = connect_ssh(row, key)
    try:
        status, out, err = ssh_run(client, " && ".join(script) + " && date +%s")
    finally:
        client.close()
    assert status == 0, err
    return float(out.strip())


def _row(out: str, name: str) -> list[str]:
    return [line for line in out.splitlines() if line.split("  ", 1)[0] == name]


def test_runs_lists_a_live_a_finished_and_a_failed_run_with_cost_and_staleness(
    world, s3, emulator, ssh_keypair, capsys
):
    live = _rent(emulator, "day2-live")
    stranger = _rent(emulator, "day2-stranger", owned=False)  # not created by this project
    try:
        clock = _write(live, ssh_keypair.private_key, {"status.json": json.dumps(STATUS)})
        beat = {
            "run_name": "day2-live",
            "state": "running",
            "phase": "pipeline",
            "stage": "operator",
            "step": 120,
            "dph": 0.5,
            "cost_so_far": 9.99,
            "updated_epoch": clock - 600,
        }  # nobody wrote it for 10 min
        lines = "\n".join(f"step {i} loss {1.0 / (i + 1):.4f}" for i in range(30)) + "\n"
        _write(
            live, ssh_keypair.private_key, {"heartbeat.json": json.dumps(beat), "logs/operator.log": lines}
        )
        bucket = world["bucket"]
        _put(s3, bucket, "day2-live", "heartbeat.json", {**beat, "state": "starting"})  # an older sync
        _put(
            s3,
            bucket,
            "day2-done",
            "heartbeat.json",
            _final_beat("day2-done", "succeeded", 0.0512, wandb_url="https://wandb.ai/t/p/runs/done1"),
        )
        _put(
            s3,
            bucket,
            "day2-done",
            "status.json",
            {"stage": "evaluate", "loss": 0.0021, "state": "succeeded"},
        )
        _put(s3, bucket, "day2-done", "metrics/metrics.md", METRICS_MD)
        _put(
            s3,
            bucket,
            "day2-failed",
            "heartbeat.json",
            _final_beat("day2-failed", "failed", 0.0021, stage="operator", error="stage operator: boom"),
        )

        assert main(["runs", *world["ssh"]]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].split() == [
            "RUN",
            "WHERE",
            "STATE",
            "STAGE",
            "STEP",
            "LOSS",
            "ETA",
            "GPU",
            "$/H",
            "AGE",
            "COST",
            "HEARTBEAT",
            "W&B",
        ]
        (live_row,) = _row(out, "day2-live")  # live and in the bucket: shown once, live
        assert f"#{live['id']}" in live_row and "running" in live_row and "120/400" in live_row
        assert "0.0123" in live_row and " 0:01 " in live_row  # the ETA as h:mm
        assert re.search(r"\b1[01] min STALE\b", live_row) and "https://wandb.ai/team" in live_row
        assert "$9.99" not in live_row and re.search(
            r"\$0\.\d{4}", live_row
        )  # age x $/h, not the frozen figure
        (done,) = _row(out, "day2-done")
        assert (
            "bucket" in done and "succeeded (destroyed)" in done and "$0.0512" in done and "STALE" not in done
        )
        (failed,) = _row(out, "day2-failed")
        assert "failed (destroyed)" in failed and "operator" in failed and "$0.0021" in failed
        assert not _row(out, "day2-stranger")
        assert "STALE heartbeat: day2-live" in out
        known = world["known_hosts"] / str(live["id"])
        assert known.is_file() and known.read_text().strip(), "the host key is recorded per instance"

        assert main(["runs", "--all", "--no-bucket", *world["ssh"]]) == 0
        everyone = capsys.readouterr().out
        assert _row(everyone, "day2-stranger") and not _row(everyone, "day2-done")

        # What status.yml prints (-e run=... -e lines=3): the details under the table.
        assert main(["runs", "--run", "day2-live", "--lines", "3", *world["ssh"]]) == 0
        detail = capsys.readouterr().out
        assert f"day2-live: instance {live['id']} running" in detail
        assert "training: running, stage operator, step 120/400, loss 0.0123, eta 0:01" in detail
        assert re.search(r"heartbeat: 6\d\d s old - STALE", detail)
        assert "W&B: https://wandb.ai/team/universal-simulator/runs/abc123" in detail
        assert "cost so far ~$" in detail and "supervisor's accounting $9.99" in detail
        assert "step 29 loss 0.0333" in detail and "step 26 loss" not in detail
        assert not _row(detail, "day2-done")

        assert main(["runs", "--run", "day2-done", "--detail", *world["ssh"]]) == 0
        finished = capsys.readouterr().out
        assert "day2-done: succeeded at stage evaluate" in finished and "| operator | 0.0412 |" in finished
        assert "billing: DESTROYED - run succeeded" in finished
    finally:
        emulator.destroy(live["id"])
        emulator.destroy(stranger["id"])


def test_a_changed_host_key_is_refused_and_said(world, emulator, ssh_keypair, tmp_path, capsys):
    row = _rent(emulator, "day2-hostkey")
    try:
        host, port = row["public_ipaddr"], row["ports"]["22/tcp"][0]["HostPort"]
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
        )
        other = (tmp_path / "other.pub").read_text().split()[:2]
        world["known_hosts"].mkdir(parents=True, exist_ok=True)
        (world["known_hosts"] / str(row["id"])).write_text(f"[{host}]:{port} {' '.join(other)}\n")
        assert main(["runs", "--run", "day2-hostkey", "--detail", "--no-bucket", *world["ssh"]]) == 0
        out = capsys.readouterr().out
        assert "unreachable" in out and "host key changed" in out, out
    finally:
        emulator.destroy(row["id"])


def test_follow_tails_the_log_and_switches_to_the_bucket_when_the_instance_is_gone(
    world, s3, emulator, ssh_keypair
):
    row = _rent(emulator, "day2-follow")
    key = ssh_keypair.private_key
    clock = _write(
        row,
        key,
        {
            "status.json": json.dumps({**STATUS, "run_name": "day2-follow"}),
            "logs/operator.log": "step 1 loss 0.5\nstep 2 loss 0.4\n",
        },
    )
    beat = {
        "run_name": "day2-follow",
        "state": "running",
        "phase": "pipeline",
        "stage": "operator",
        "step": 2,
        "total_steps": 400,
        "elapsed_s": 42.0,
        "cost_so_far": 0.0003,
        "updated_epoch": clock,
    }
    _write(row, key, {"heartbeat.json": json.dumps(beat)})
    ssh = SshSettings(key_file=key, known_hosts_dir=world["known_hosts"])
    sources = Sources.from_env(ssh)
    said: list[str] = []
    follower = Follower(
        sources, "day2-follow", FollowSettings(poll_s=0.3, timeout_s=120, record_s=20), say=said.append
    )
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(final=follower.run()), daemon=True)
    thread.start()
    try:
        _wait_for(lambda: any("step 2 loss 0.4" in line for line in said), said)
        assert any(re.search(r"stage operator step 2/400: running \(pipeline", line) for line in said), said
        _write(row, key, {"logs/operator.log": "step 3 loss 0.3\n"}, append=True)
        _wait_for(lambda: any("step 3 loss 0.3" in line for line in said), said)  # the live tail
        bucket = world["bucket"]
        _put(s3, bucket, "day2-follow", "heartbeat.json", _final_beat("day2-follow", "succeeded", 0.0042))
        _put(s3, bucket, "day2-follow", "metrics/metrics.md", METRICS_MD)
    finally:
        emulator.destroy(row["id"])  # the self-destroy, as far as a follower can tell
    thread.join(timeout=60)
    assert not thread.is_alive(), said
    text = "\n".join(said)
    assert result["final"]["state"] == "succeeded"
    assert text.count("step 2 loss 0.4") == 1, text  # each log line once
    assert f"instance {row['id']} is gone" in text and text.index("is gone") < text.index(
        "day2-follow: succeeded"
    )
    assert "cost: $0.0042" in text and "| operator | 0.0412 |" in text and "billing: DESTROYED" in text
    assert "python -m vastkit results day2-follow" in text


def test_follow_ends_when_the_run_ended_and_its_instance_is_kept(world, emulator, ssh_keypair):
    row = _rent(emulator, "day2-kept")
    try:
        clock = _write(row, ssh_keypair.private_key, {})
        beat = {
            **_final_beat("day2-kept", "succeeded", 0.002),
            "updated_epoch": clock,
            "ending": "kept",
            "ending_reason": "auto_shutdown=false: the instance stays for you",
        }
        _write(row, ssh_keypair.private_key, {"heartbeat.json": json.dumps(beat)})
        said: list[str] = []
        ssh = SshSettings(key_file=ssh_keypair.private_key, known_hosts_dir=world["known_hosts"])
        settings = FollowSettings(poll_s=0.3, timeout_s=60, logs=False)
        final = Follower(Sources.from_env(ssh), "day2-kept", settings, say=said.append).run()
        assert final["ending"] == "kept" and emulator.instance(row["id"])["actual_status"] == "running"
        assert "billing: KEPT - auto_shutdown=false: the instance stays for you" in said, said
    finally:
        emulator.destroy(row["id"])


def test_follow_of_a_run_that_already_failed_prints_its_record_and_exits_1(world, s3, capsys):
    _put(
        s3,
        world["bucket"],
        "day2-gone",
        "heartbeat.json",
        _final_beat("day2-gone", "failed", 0.001, stage="operator", error="stage operator: boom"),
    )
    assert main(["follow", "day2-gone", "--poll", "0.2", *world["ssh"]]) == 1
    out = capsys.readouterr().out
    assert "day2-gone: failed at stage operator" in out and "error: stage operator: boom" in out


def test_results_fetches_metrics_plots_and_final_checkpoints(world, s3, tmp_path, capsys):
    bucket = world["bucket"]
    final = b"final-weights" * 100
    _put(s3, bucket, "day2-res", "heartbeat.json", _final_beat("day2-res", "succeeded", 0.05))
    _put(s3, bucket, "day2-res", "metrics/metrics.md", METRICS_MD)
    _put(s3, bucket, "day2-res", "metrics/metrics.json", {"operator": {"nrmse": 0.0412}})
    _put(s3, bucket, "day2-res", "metrics/spacetime_operator.png", b"\x89PNG fake image bytes")
    _put(
        s3,
        bucket,
        "day2-res",
        "checkpoints/operator/final.pt",
        final,
        sha256=hashlib.sha256(final).hexdigest(),
    )
    _put(s3, bucket, "day2-res", "checkpoints/operator/last.pt", b"superseded")
    _put(s3, bucket, "day2-res", "logs/operator.log", "step 1\n")
    _put(s3, bucket, "day2-res", "wandb/offline-run-1/run-1.wandb", b"wandb")
    into = tmp_path / "results"
    assert main(["results", "day2-res", "--into", str(into)]) == 0
    out = capsys.readouterr().out
    assert (into / "metrics" / "spacetime_operator.png").read_bytes() == b"\x89PNG fake image bytes"
    assert json.loads((into / "metrics" / "metrics.json").read_text()) == {"operator": {"nrmse": 0.0412}}
    assert (into / "checkpoints" / "operator" / "final.pt").read_bytes() == final
    assert not (into / "checkpoints" / "operator" / "last.pt").exists() and not (into / "logs").exists()
    assert "plots: metrics/spacetime_operator.png" in out and "| operator | 0.0412 |" in out
    assert "left in s3://" in out and "logs, wandb" in out

    assert main(["results", "day2-res", "--into", str(into), "--wandb"]) == 0
    again = capsys.readouterr().out
    assert "1 fetched" in again and (into / "wandb" / "offline-run-1" / "run-1.wandb").is_file()
    assert f"wandb sync {into}/wandb/offline-run-*" in again


def test_results_refuses_a_download_whose_checksum_differs(world, s3, tmp_path, capsys):
    _put(s3, world["bucket"], "day2-bad", "metrics/metrics.md", METRICS_MD, sha256="0" * 64)
    assert main(["results", "day2-bad", "--into", str(tmp_path / "r")]) == 1
    assert "sha256 differs" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics" / "metrics.md").exists()


def test_results_of_an_unknown_run_says_so(world, capsys):
    assert main(["results", "day2-nothing", "--into", "/tmp/unused-day2"]) == 1
    assert "is empty: no run day2-nothing" in capsys.readouterr().err


def test_without_b2_settings_runs_shows_live_runs_and_says_why_not_finished_ones(world, monkeypatch, capsys):
    monkeypatch.delenv("B2_BUCKET")
    assert main(["runs", "--label-prefix", "day2-none-", *world["ssh"]]) == 0
    out = capsys.readouterr().out
    assert "No instance matches" in out and "missing B2_BUCKET" in out


def _wait_for(check, said, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("\n".join(said))
        time.sleep(0.1)


def test_a_malformed_b2_setting_is_named_never_shown(monkeypatch, capsys):
    sentinel = "sentinel0b2endpoint0c0ffee"
    for name, value in {
        "B2_KEY_ID": "sentinel0keyid",
        "B2_APP_KEY": "sentinel0appkey",
        "B2_BUCKET": "b",
        "B2_S3_ENDPOINT": f"http://127.0.0.1:1/{sentinel}",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["results", "day2-any"]) == 2
    err = capsys.readouterr().err
    assert "B2_S3_ENDPOINT must be a host or URL" in err and "$B2_S3_ENDPOINT" in err and sentinel not in err


def test_an_api_that_does_not_answer_is_named_with_the_fix(monkeypatch, capsys):
    monkeypatch.setenv("VAST_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("VAST_API_KEY", "sentinel0vastkey")
    monkeypatch.setenv("VASTKIT_PACING_SCALE", "0")
    assert main(["runs", "--no-bucket"]) == 1
    err = capsys.readouterr().err
    assert "did not answer" in err and "check VAST_URL" in err and "HTTP None" not in err
    assert "sentinel0vastkey" not in err
