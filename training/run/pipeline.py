"""Runs stages in order: validates everything first, skips finished stages, reports status and failure.

Contract with the supervisor: exactly one `PIPELINE STARTED run=... stages=... wandb=...` line at
start, `PIPELINE FINISHED ok` or `PIPELINE FAILED stage=<stage>: <message>` at the end (non-zero exit
on failure), and `<run-dir>/status.json` kept current. These lines go to stdout and the stage log; the
supervisor keeps stdout in logs/pipeline.log (so we never write that file ourselves). Failures before the first stage (config, data
files, runtime) report `stage=setup`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from run_contract import failed_line, finished_line, started_line
from training.config import STAGES, Config, ConfigError, load_config
from training.run.context import StageContext, StageResult
from training.run.paths import RunPaths, atomic_write_json
from training.run.runlock import RunDirLock
from training.run.runtime import Runtime, seed_everything, setup_runtime, teardown_runtime
from training.run.stopping import StopRequest, Terminated
from training.run.tracking import Tracker
from training.run.wandb_run import WandbRun, job_type_for, launch_facts, run_group, tags_for
from training.stages import registry
from training.store.checkpoint import CheckpointError, config_differences, same_training_data
from training.store.checkpoint_store import CheckpointStore, remote_from_env
from training.store.datafiles import DataPlan, plan_data

SETUP = "setup"
MORE_STEPS = "steps raised"  # is_finished's reason when a final checkpoint is to be trained longer


@dataclass(frozen=True)
class PipelineOptions:
    config_path: Path
    stage: str  # a stage name or "all"
    run_dir: Path
    data_dir: Path
    run_name: str | None = None  # None: the config's name
    reset_cache: bool = True
    fail_at: str | None = None  # TRAIN_FAIL_AT_STAGE test hook
    lock_wait_s: float = 120.0  # how long to wait for a previous pipeline of this run dir to let go
    seed: int | None = None  # overrides the config's seed (TRAIN_SEED / --seed); recorded per trained segment


def stage_module(stage: str):
    """The module implementing `stage` (each exposes run(ctx) -> StageResult)."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES)} (or all)")
    return registry.module_of(stage)


def planned_stages(cfg: Config, stage: str) -> list[str]:
    if stage == "all":
        return list(cfg.stages)
    stage_module(stage)  # validates the name
    return [stage]


def final_marker(store: CheckpointStore, stage: str) -> dict | None:
    if not store.exists(stage, "final.pt"):
        return None
    return store.read_marker(stage, "final.json")


def is_finished(store: CheckpointStore, stage: str, config: dict, data: DataPlan) -> tuple[bool, str]:
    """(finished, why not): finished means a final checkpoint made from the current upstream results.

    A final checkpoint made with another config is an error, not a reason to retrain silently; one with
    fewer steps than asked is continued (why = MORE_STEPS); one with more is an error (no shortening).
    Trained stages depend on the train and val files only; evaluate on the test files too.
    """
    if not registry.get(stage).final_checkpoint:
        return False, f"the {stage} stage checks its own key"
    marker = final_marker(store, stage)
    if marker is None:
        return False, "no final checkpoint"
    differences = config_differences(marker.get("config", {}), config, stage, resuming=True)
    if differences and stage == "evaluate":  # cheap to redo: new evaluation settings just re-run it
        return False, "evaluation settings changed"
    if differences:
        raise CheckpointError(
            f"{store.path(stage, 'final.pt')}: made with another config; differing keys: {'; '.join(differences[:8])}. "
            "Use the config it was made with, or a fresh --run-dir (or TRAIN_RUN_NAME) for this config."
        )
    recorded = marker["upstream"].get("data")
    if not (recorded == data.fingerprint if stage == "evaluate" else same_training_data(recorded, data)):
        return False, "data files changed since it was made"
    for upstream in registry.upstream_of(stage):
        current = final_marker(store, upstream)
        if current is None or marker["upstream"].get(upstream) != current["uid"]:
            return False, f"{upstream} changed since it was made"
    if registry.get(stage).trains:
        done, asked = int(marker.get("step", 0)), int(config[stage]["steps"])
        if done > asked:
            raise CheckpointError(
                f"{store.path(stage, 'final.pt')}: trained to step {done}, but {stage}.steps is {asked}: training "
                f"cannot be shortened; set {stage}.steps >= {done} (to train longer) or use a fresh --run-dir")
        if done < asked:
            return False, MORE_STEPS
    return True, ""


def run_pipeline(options: PipelineOptions) -> int:
    """Returns the process exit code: 0 on success, 1 on a failed stage, 2 on a setup error."""
    current = SETUP
    tracker: Tracker | None = None
    runtime: Runtime | None = None
    paths = RunPaths(run_dir=options.run_dir, data_dir=options.data_dir)
    run_name = options.run_name or "unnamed"
    stop = StopRequest()
    stop.install()
    lock: RunDirLock | None = None
    try:
        cfg = load_config(options.config_path)
        config_seed = cfg.seed
        if options.seed is not None:
            cfg = dataclasses.replace(cfg, seed=options.seed)
        run_name = options.run_name or cfg.name
        stages = planned_stages(cfg, options.stage)
        if options.fail_at is not None and options.fail_at not in STAGES:
            raise ConfigError(f"TRAIN_FAIL_AT_STAGE={options.fail_at!r}: valid stages: {', '.join(STAGES)}")
        runtime = setup_runtime(cfg.runtime)
        if runtime.is_main:
            paths.make()
            lock = RunDirLock(paths.run_dir, wait_s=options.lock_wait_s).acquire()
        wandb = start_wandb(cfg, run_name, paths, runtime, stages) if runtime.is_main else WandbRun.disabled()
        tracker = Tracker(paths, run_name, is_main=runtime.is_main, wandb=wandb,
                          status_every_s=cfg.runtime.status_every_s)
        tracker.start_stage(stages[0])
        tracker.line(started_line(run_name, stages, wandb.url))
        tracker.line(f"runtime: device={runtime.device.type} world_size={runtime.world_size} bf16={runtime.bf16} "
                     f"compile={runtime.compile}")
        if options.seed is not None and options.seed != config_seed:
            tracker.line(f"seed: {cfg.seed} (overrides the config's {config_seed}; recorded in each checkpoint)")
        data = plan_data(cfg, paths.data_dir)  # every data file checked before any training
        store = CheckpointStore(paths, run_name, is_main=runtime.is_main, remote=remote_from_env(),
                                log=tracker.line)
        store.fetch_missing([*STAGES])
        runtime.barrier()
        ctx = StageContext(cfg=cfg, paths=paths, runtime=runtime, tracker=tracker, checkpoints=store, data=data,
                           reset_cache=options.reset_cache, fail_at=options.fail_at, stop=stop)
        results: list[StageResult] = []
        for stage in stages:
            if stop.requested:  # a SIGTERM that arrived as the previous stage finished
                raise Terminated(f"received {stop.signal_name} after stage {current}")
            current = stage
            tracker.start_stage(stage)
            results.append(_run_stage(ctx, stage, explicit=options.stage != "all"))
        _write_summary(paths, run_name, results, runtime)
        tracker.line(finished_line())
        tracker.close("done")
        return 0
    except Exception as exc:  # the supervisor needs one line and an exit code whatever went wrong
        stop.in_loop = True  # a SIGTERM now (torchrun stopping the other ranks) must not cut the report short
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        line = failed_line(current, message)
        if runtime is not None and not runtime.is_main:  # only rank 0 writes the log: say it on stderr
            print(f"[rank {runtime.rank}] {line}", file=sys.stderr, flush=True)
        if tracker is None:
            print(line, flush=True)
            _write_failed_status(paths, run_name, current, message)
        else:
            tracker.line(traceback.format_exc().rstrip())
            tracker.line(line)
            _alert(tracker.wandb, run_name, current, exc, message)
            tracker.close("failed", error=message)
        return 2 if current == SETUP else 1
    finally:
        stop.uninstall()
        if runtime is not None:
            teardown_runtime(runtime)
        if lock is not None:
            lock.release()


def start_wandb(cfg: Config, run_name: str, paths: RunPaths, runtime: Runtime, stages: list[str]) -> WandbRun:
    """The run's W&B run: grouped by fleet/sweep, typed by job, tagged, with the launch facts in its config."""
    facts = launch_facts()
    if runtime.device.type == "cuda" and "gpu" not in facts:
        import torch

        facts["gpu"] = torch.cuda.get_device_name(runtime.device)
    facts["world_size"] = runtime.world_size
    return WandbRun.start(run_name=run_name, project=cfg.wandb.project, entity=cfg.wandb.entity,
                          run_dir=paths.run_dir, config={**cfg.to_dict(), "launch": facts}, group=run_group(),
                          job_type=job_type_for(stages), tags=tags_for(cfg.name, facts), stages=stages)


def _alert(wandb: WandbRun, run_name: str, stage: str, exc: Exception, message: str) -> None:
    """A stop (SIGTERM: the budget, a preemption or a person) warns; anything else is an error."""
    if isinstance(exc, Terminated):
        wandb.alert(f"{run_name} stopped in {stage}", f"{message} (a budget stop, a preemption or a person's "
                    "stop: the supervisor's heartbeat says which)", level="WARN")
    else:
        wandb.alert(f"{run_name} failed in {stage}", message, level="ERROR")


def _run_stage(ctx: StageContext, stage: str, *, explicit: bool) -> StageResult:
    store, tracker = ctx.checkpoints, ctx.tracker
    try:
        finished, why = is_finished(store, stage, ctx.config_dict, ctx.data)
    except CheckpointError as exc:
        if not explicit:  # `all` never silently replaces a result made with another config
            raise
        finished, why = False, f"asked explicitly, config changed: {exc}"
    if finished and not explicit:
        tracker.line(f"[{stage}] finished earlier (final checkpoint matches its inputs): skipped")
        return StageResult(stage, skipped=True)
    if finished and explicit:
        tracker.line(f"[{stage}] finished earlier; asked explicitly: running it again")
        store.remove(stage, "final.pt")
        store.remove(stage, "final.json")
    elif why == MORE_STEPS:
        tracker.line(f"[{stage}] {stage}.steps raised to {ctx.config_dict[stage]['steps']}: training its final "
                     "checkpoint longer")
    elif registry.get(stage).final_checkpoint and store.exists(stage, "final.pt"):
        tracker.line(f"[{stage}] final checkpoint is stale ({why}): training again")
        store.remove(stage, "final.pt")
        store.remove(stage, "final.json")
    ctx.runtime.barrier()
    seed_everything(ctx.cfg.seed)
    started = time.perf_counter()
    result = stage_module(stage).run(ctx)
    result.wall_s = result.wall_s or (time.perf_counter() - started)
    tracker.line(f"[{stage}] done in {time.perf_counter() - started:.1f} s")
    tracker.log_metrics({f"{stage}/{key}": value for key, value in result.metrics.items()
                         if isinstance(value, int | float)})
    return result


def _write_summary(paths: RunPaths, run_name: str, results: list[StageResult], runtime: Runtime) -> None:
    if not runtime.is_main:
        return
    atomic_write_json(paths.metrics / "stages.json", {
        "run_name": run_name,
        "stages": {r.stage: {"skipped": r.skipped, "steps": r.steps, "wall_s": round(r.wall_s, 2),
                             "samples_per_s": r.samples_per_s, "metrics": r.metrics} for r in results},
    })


def _write_failed_status(paths: RunPaths, run_name: str, stage: str, message: str) -> None:
    """Setup failed before the tracker existed: still leave a status.json for the supervisor."""
    with contextlib.suppress(OSError):  # an unwritable run dir must not hide the real error
        atomic_write_json(paths.status, {
            "run_name": run_name, "stage": stage, "step": 0, "total_steps": 0, "loss": None,
            "samples_per_s": None, "eta_s": None, "state": "failed", "error": message, "wandb_url": None,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        })
