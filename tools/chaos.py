"""The safety scenarios: each breaks a run the way the real world does and records how the billing ended.

Each scenario launches through the real playbooks against the local world (emulator instances over SSH,
the S3 server, tmux, torch), provokes one fault, then waits until no GPU bills (the instance destroyed, or
stopped with its disk kept) and records what the run's heartbeat and the bucket say. tests/e2e runs them
side by side and asserts on the records; `make chaos` (`python -m tools.chaos`) runs them and writes the
table in docs/safety.md.

Times are scaled for tests (leases of seconds, destroy fallback after a minute); `--slow` uses the real
ones where a scenario is about a duration (DELETE refused for longer than the old 300 s).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import run_contract as contract
from tools.world import LocalWorld

CODE_DIR = contract.CODE_DIR
# A score of runs side by side race for the cheapest offers: more attempts than a lone user needs.
ANY_GPU = ("-e", "gpu=any", "-e", "max_attempts=8")
MID_CONFIG = "tests/e2e/configs/tiny_mid.yaml"  # long enough to break mid-training, short enough to finish
LONG_CONFIG = "tests/e2e/configs/tiny_long.yaml"
# How long a scenario waits for training to reach the step where its fault strikes: a score of runs share two
# cores in the e2e session, and one run's autoencoder took longer than 240 s there.
TRAINING_WAIT_S = 420
# Policy keys that make the safety paths take seconds: heartbeat, ceilings, fallbacks, syncs.
FAST = {"heartbeat_every_s": 1.0, "stop_grace_s": 10.0, "ceiling_grace_s": 60.0, "destroy_fallback_s": 120.0,
        "final_sync_attempts": 2, "sync_timeout_s": 60.0}


@dataclass
class ChaosResult:
    scenario: str
    what: str
    outcome: str = "?"  # how the billing ended: destroyed | stopped | running (a failure)
    billing_ended_s: float | None = None  # from the fault until no GPU bills
    facts: dict = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    error: BaseException | None = None


def settings_arg(**over) -> tuple[str, str]:
    return ("-e", json.dumps({"supervisor_settings": {**FAST, **over}}))


def wait_for(what: str, probe: Callable[[], object], timeout: float, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(poll)


def billing_ended(world: LocalWorld, run: str) -> str | None:
    """destroyed | stopped once no instance of the run bills for a GPU; None while one does."""
    rows = world.instances(run)
    if not rows:
        return contract.DESTROYED
    if all(r.get("actual_status") in ("stopped", "exited") and r.get("intended_status") == "stopped" for r in rows):
        return contract.STOPPED
    return None


def wait_billing_ended(world: LocalWorld, run: str, res: ChaosResult, since: float, timeout: float = 420) -> None:
    res.outcome = wait_for(f"run {run}: no GPU billing", lambda: billing_ended(world, run), timeout)
    res.billing_ended_s = round(time.monotonic() - since, 1)


def bucket_json(world: LocalWorld, key: str) -> dict | None:
    try:
        return json.loads(world.s3.read(key))
    except Exception:  # noqa: BLE001 - not there
        return None


def bucket_text(world: LocalWorld, key: str) -> str:
    try:
        return world.s3.read(key).decode(errors="replace")
    except Exception:  # noqa: BLE001 - not there
        return ""


def final_record(world: LocalWorld, run: str, res: ChaosResult) -> None:
    res.facts["heartbeat"] = bucket_json(world, f"runs/{run}/heartbeat.json")
    res.facts["artifacts"] = world.artifacts(run)
    res.facts["pipeline_log"] = bucket_text(world, f"runs/{run}/logs/pipeline.log")
    res.facts["agent_log"] = bucket_text(world, f"runs/{run}/{contract.AGENT_LOG}")


def heartbeat_on_instance(world: LocalWorld, run: str) -> dict:
    code, out, _ = world.ssh(run, f"cat {CODE_DIR}/{contract.HEARTBEAT_FILE}", timeout=20)
    return json.loads(out) if code == 0 and out.strip() else {}


def training_step(world: LocalWorld, run: str, stage: str = "operator", step: int = 1) -> bool:
    try:
        beat = heartbeat_on_instance(world, run)
    except Exception:  # noqa: BLE001 - not reachable yet
        return False
    return beat.get("stage") == stage and (beat.get("step") or 0) >= step


def launch(world: LocalWorld, res: ChaosResult, config: str, run: str, *extra: str, check: bool = True) -> str:
    out = world.launch(config, run, *ANY_GPU, *settings_arg(), *extra, check=check).stdout
    res.outputs.append(out)
    return out


# ----- the scenarios ------------------------------------------------------------------------------------

def container_restart(world: LocalWorld, res: ChaosResult) -> None:
    run = "chaos-restart"
    launch(world, res, MID_CONFIG, run)
    wait_for("operator training", lambda: training_step(world, run, step=20), TRAINING_WAIT_S)
    first = world.instance(run)["id"]
    since = time.monotonic()
    world.emulator.set_faults({"kind": "restart", "target": {"instance_id": first}})
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)
    res.facts["instance_id"] = first


def preempt_and_resume(world: LocalWorld, res: ChaosResult) -> None:
    run = "chaos-preempt"
    launch(world, res, MID_CONFIG, run)
    wait_for("operator training", lambda: training_step(world, run, step=20), TRAINING_WAIT_S)
    first = world.instance(run)["id"]
    since = time.monotonic()
    world.emulator.set_faults({"kind": "preempt", "target": {"instance_id": first}, "resume_after_s": 20})
    row = wait_for("outbid", lambda: (r := world.instance(run)) and r.get("cur_state") == "stopped" and r, 120,
                   poll=0.5)
    res.facts["outbid_row"] = {k: row.get(k) for k in ("cur_state", "intended_status", "next_state")}
    # Outbid is stopped billing, but the run is not over: it must come back by itself and finish.
    wait_for("the instance back by itself", lambda: (r := world.instance(run)) and r.get("actual_status") == "running",
             120, poll=0.5)
    res.facts["same_instance"] = world.instance(run)["id"] == first
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)


def kill_supervisor(world: LocalWorld, res: ChaosResult) -> None:
    run = "chaos-kill-supervisor"
    launch(world, res, MID_CONFIG, run)
    wait_for("operator training", lambda: training_step(world, run, step=10), TRAINING_WAIT_S)
    since = time.monotonic()
    world.ssh(run, "pkill -9 -f 'instance_agent --code-dir [^ ]* supervise'")
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)


def kill_pipeline(world: LocalWorld, res: ChaosResult) -> None:
    run = "chaos-kill-pipeline"
    launch(world, res, MID_CONFIG, run)
    wait_for("operator training", lambda: training_step(world, run, step=10), TRAINING_WAIT_S)
    since = time.monotonic()
    world.ssh(run, "pkill -9 -f 'training run --config'")
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)


def disk_full(world: LocalWorld, res: ChaosResult) -> None:
    """The disk fills up mid-training and stays full: the pipeline fails, the sync still gets the data out."""
    run = "chaos-disk-full"
    launch(world, res, MID_CONFIG, run)
    # Past the operator's first checkpoint (every 20 steps): the sync must get out what was on the disk.
    wait_for("operator training", lambda: training_step(world, run, step=25), TRAINING_WAIT_S)
    since = time.monotonic()
    world.emulator.set_faults({"kind": "disk_full", "target": {"label": run}})
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)


def delete_refused(world: LocalWorld, res: ChaosResult, refuse_s: float = 45.0) -> None:
    """Every DELETE by the instance answers 503 for `refuse_s` (the real scenario: longer than the old 300 s)."""
    run = "chaos-delete-refused"
    launch(world, res, "tiny", run, *settings_arg(destroy_fallback_s=refuse_s + 600))
    instance_id = world.instance(run)["id"]
    wait_for("the run to hand over its ending", lambda: _phase(world, run) in ("ending", None), 300, poll=0.5)
    since = time.monotonic()
    world.emulator.set_faults({"kind": "http_error", "status": 503, "for_s": refuse_s, "method": "DELETE",
                               "path": f"/api/v0/instances/{instance_id}", "caller": "instance"})
    wait_billing_ended(world, run, res, since, timeout=refuse_s + 300)
    final_record(world, run, res)
    res.facts["refused_s"] = refuse_s


def _phase(world: LocalWorld, run: str) -> str | None:
    try:
        return heartbeat_on_instance(world, run).get("phase")
    except Exception:  # noqa: BLE001 - gone already
        return None


def b2_down_mid_run(world: LocalWorld, res: ChaosResult) -> None:
    """The bucket is unreachable for a while mid-training: training goes on, the syncs catch up."""
    run = "chaos-b2-mid"
    launch(world, res, MID_CONFIG, run)
    wait_for("operator training", lambda: training_step(world, run, step=5), TRAINING_WAIT_S)
    since = time.monotonic()
    world.outage.fail(f"runs/{run}/", for_s=30)
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)


def b2_down_at_the_end(world: LocalWorld, res: ChaosResult) -> None:
    """The bucket stays unreachable: the final sync fails, so the instance is stopped (disk kept), not destroyed."""
    run = "chaos-b2-end"
    launch(world, res, "tiny", run, *settings_arg(sync_timeout_s=15.0))
    since = time.monotonic()
    world.outage.fail(f"runs/{run}/")
    wait_billing_ended(world, run, res, since)
    res.facts["rows"] = world.instances(run)
    world.outage.heal(f"runs/{run}/")
    for row in res.facts["rows"]:  # the disk is kept for a person to recover; here, clean up
        world.api().destroy_instance(row["id"])


def ctrl_c_in_tmux(world: LocalWorld, res: ChaosResult) -> None:
    run = "chaos-ctrl-c"
    launch(world, res, LONG_CONFIG, run)
    wait_for("operator training", lambda: training_step(world, run, step=5), TRAINING_WAIT_S)
    since = time.monotonic()
    code, _, err = world.ssh(run, f"tmux send-keys -t {contract.TMUX_SESSION} C-c")
    res.facts["send_keys"] = (code, err)
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)


def tmux_killed(world: LocalWorld, res: ChaosResult) -> None:
    run = "chaos-tmux-killed"
    launch(world, res, MID_CONFIG, run)
    wait_for("operator training", lambda: training_step(world, run, step=5), TRAINING_WAIT_S)
    since = time.monotonic()
    world.ssh(run, f"tmux kill-session -t {contract.TMUX_SESSION}")
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)


def controller_gone(world: LocalWorld, res: ChaosResult) -> None:
    """The controller rents and never comes back (Ctrl-C, a laptop asleep): the lease destroys the instance."""
    run = "chaos-controller-gone"
    out = launch(world, res, "tiny", run, "-e", "provision=false", "-e", "lease_minutes=1")
    said = " ".join(out.split())  # the YAML callback wraps long lines
    res.facts["summary_names_the_lease"] = "destroys it when its lease runs out, 1.0 min after creation" in said
    row = world.instance(run)
    if row is None:  # a loaded machine spent the lease on the launch itself: the lease already destroyed it
        created = [r for r in world.emulator.requests() if r["method"] == "PUT" and r["path"].startswith("/api/v0/asks/")]
        raise RuntimeError(f"the instance was gone before the launch returned ({len(created)} creates seen)")
    res.facts["instance_id"] = row["id"]
    since = time.monotonic() - (time.time() - float(row["start_date"]))  # the lease counts from creation
    wait_billing_ended(world, run, res, since, timeout=240)
    def deletes():  # logged once answered: the destroy kills the caller's processes first, so it trails
        return [r for r in world.emulator.requests() if r["method"] == "DELETE"
                and r["path"].startswith(f"/api/v0/instances/{res.facts['instance_id']}")]

    res.facts["delete_callers"] = sorted({r["caller"] for r in wait_for("the DELETE in the log", deletes, 60)})


def ssh_lost_while_provisioning(world: LocalWorld, res: ChaosResult) -> None:
    """sshd dies a few seconds into provisioning: no rescue runs for an unreachable host, the last step does."""
    run = "chaos-ssh-lost"
    world.emulator.set_faults({"kind": "sshd_dies", "target": {"label": run}, "after_s": 12})
    since = time.monotonic()
    out = launch(world, res, "tiny", run, check=False)
    res.facts["unreachable"] = "UNREACHABLE!" in out
    res.facts["cleanup_said"] = "Provisioning lost the connection to chaos-ssh-lost" in " ".join(out.split())
    wait_billing_ended(world, run, res, since, timeout=240)


def budget_without_auto_shutdown(world: LocalWorld, res: ChaosResult) -> None:
    run = "chaos-budget-kept"
    # The budget counts from creation, provisioning included: a loaded machine may spend it before the handover,
    # and then launch fails (the run ended before it started) while the instance is stopped as it should be.
    launch(world, res, LONG_CONFIG, run, "-e", "auto_shutdown=false", "-e", "max_runtime_hours=0.1", check=False)
    row = world.instance(run)
    since = time.monotonic() - (time.time() - float(row["start_date"])) + 360.0  # from the ceiling
    wait_billing_ended(world, run, res, since)
    final_record(world, run, res)
    for row in world.instances(run):  # stopped with its disk: a person would tear it down
        world.api().destroy_instance(row["id"])


SCENARIOS: dict[str, tuple[str, Callable[[LocalWorld, ChaosResult], None]]] = {
    "container_restart": ("host restart mid-training (every process dies, onstart runs again)", container_restart),
    "preempt_resume": ("interruptible outbid mid-training, back by itself after 20 s", preempt_and_resume),
    "kill_supervisor": ("kill -9 of the supervisor", kill_supervisor),
    "kill_pipeline": ("kill -9 of the pipeline", kill_pipeline),
    "disk_full": ("disk full mid-training, through the final sync", disk_full),
    "delete_refused": ("DELETE refused (503) for a while, then accepted", delete_refused),
    "b2_down_mid_run": ("B2 unreachable for 30 s mid-run", b2_down_mid_run),
    "b2_down_at_end": ("B2 unreachable through the end of the run", b2_down_at_the_end),
    "ctrl_c_tmux": ("Ctrl-C in `tmux attach -t training`", ctrl_c_in_tmux),
    "tmux_killed": ("`tmux kill-session -t training` mid-run", tmux_killed),
    "controller_gone": ("controller gone right after create (provision never ran)", controller_gone),
    "budget_kept": ("max_runtime_hours reached with auto_shutdown=false", budget_without_auto_shutdown),
    "ssh_lost_provisioning": ("SSH lost mid-provisioning (sshd dies; the host is unreachable)", ssh_lost_while_provisioning),
}


def run_scenarios(world: LocalWorld, names: list[str], **kwargs) -> dict[str, ChaosResult]:
    results = {name: ChaosResult(scenario=name, what=SCENARIOS[name][0]) for name in names}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {}
        for name in names:
            fn = SCENARIOS[name][1]
            extra = kwargs.get(name, {})
            futures[pool.submit(fn, world, results[name], **extra)] = name
        for future in concurrent.futures.as_completed(futures):
            if (error := future.exception()) is not None:
                results[futures[future]].error = error
    return results


def table(results: dict[str, ChaosResult]) -> str:
    lines = ["| scenario | outcome | time until no GPU bills | what the run says |", "|---|---|---|---|"]
    for res in results.values():
        beat = res.facts.get("heartbeat") or {}
        said = "; ".join(str(x) for x in (beat.get("state"), beat.get("ending_reason")) if x) or "-"
        if res.error is not None:
            said = f"SCENARIO BROKE: {res.error!r}"[:200]
        seconds = "-" if res.billing_ended_s is None else f"{res.billing_ended_s:.0f} s"
        lines.append(f"| {res.what} | {res.outcome} | {seconds} | {re.sub(r'[|]', '/', said)[:220]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tools import demo
    from tools.world import local_world

    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--slow", action="store_true", help="real durations (DELETE refused for 320 s)")
    parser.add_argument("--out", default="docs/safety.md", help="where the table goes")
    parser.add_argument("--root", default=".state/chaos", help="the local world's directory")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    with local_world(Path(args.root).resolve(), log=lambda *_: None, copies=4) as world:
        demo.prepare(world, demo.TINY_PLAN, say=print)
        started = time.monotonic()
        results = run_scenarios(world, names, **({"delete_refused": {"refuse_s": 320.0}} if args.slow else {}))
    body = table(results)
    print(body)
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    marker = "<!-- chaos table -->"
    if marker in text:
        head, _, rest = text.partition(marker)
        tail = rest.split("<!-- /chaos table -->", 1)[-1]
        text = f"{head}{marker}\n{body}<!-- /chaos table -->{tail}"
    else:
        text += f"\n{marker}\n{body}<!-- /chaos table -->\n"
    out.write_text(text)
    print(f"{len(names)} scenarios in {time.monotonic() - started:.0f} s; table written to {out}")
    return 0 if all(r.error is None and r.outcome in (contract.DESTROYED, contract.STOPPED) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
