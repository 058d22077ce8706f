"""The optimisation loop every trained stage shares: resume, DDP, autocast, progress, checkpoints.

A stage hands over its trainable model and a loss closure `loss_fn(model, draw) -> scalar`; the loop
owns the optimiser (AdamW), the warmup+cosine schedule, gradient clipping, checkpointing every
`ckpt_every` steps (last.pt) and at the end (final.pt), and resuming from whichever exists.

Training longer: with `steps` raised above a final checkpoint's step, the loop continues that checkpoint
(weights, optimiser, schedule position, RNG). The warmup+cosine schedule is a function of the new total, so
the added steps follow the schedule a run planned with the new total would follow from that step on (the
learning rate rises from its old end value to the new schedule's value at that step). Each trained segment
(from/to step, seed) is appended to the checkpoint's `history`.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from training.config import TrainLoopConfig
from training.optim.schedule import BatchDraw, lr_factor
from training.run.context import StageContext
from training.run.runtime import Runtime, rng_state, set_rng_state
from training.run.stopping import Terminated
from training.store.checkpoint import CheckpointError, data_facts, same_training_data

LossFn = Callable[[nn.Module, BatchDraw], torch.Tensor]


@dataclass
class LoopOutcome:
    uid: str  # identity of the final checkpoint; keys caches and downstream stages
    steps: int
    first_loss: float | None
    final_loss: float | None
    wall_s: float
    samples_per_s: float | None
    extra: dict[str, Any] = field(default_factory=dict)
    resumed_from: int = 0


@dataclass
class TrainSpec:
    """What a stage trains: `name` is the checkpoint file prefix inside `checkpoints/<folder>/`."""

    stage: str  # stage whose log, status and TRAIN_FAIL_AT_STAGE hook apply
    kind: str  # config sections that must match on resume (see training.stages.registry.sections_of)
    loop: TrainLoopConfig
    model: nn.Module
    loss_fn: LossFn
    folder: str = ""
    name: str = ""
    aux_modules: dict[str, nn.Module] = field(default_factory=dict)  # saved too, e.g. EMA copies
    after_step: Callable[[], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # saved in the checkpoint
    upstream: dict[str, str] = field(default_factory=dict)
    seed_salt: int = 0
    autocast: bool = True  # False keeps the stage in fp32 even when runtime.bf16 is on


def train(ctx: StageContext, spec: TrainSpec) -> LoopOutcome:
    """Train `spec.model` to `spec.loop.steps`: reuse a final checkpoint of exactly that step, else resume from
    the furthest usable checkpoint, run the remaining steps and save final.pt with its marker."""
    session = _open(ctx, spec)
    found = _usable_checkpoints(ctx, spec, session.folder, (session.final_name, session.last_name))
    ctx.runtime.barrier()  # no rank looks again before rank 0 has removed a stale file
    final = found.get(session.final_name)
    _refuse_shortening(session, final)
    if final is not None and final["step"] == spec.loop.steps:
        return _reuse(session, final)
    _resume(session, found.get(session.last_name), final)
    session.facts = data_facts(ctx.data)
    wall, last_loss = _run_steps(session)
    return _save_final(session, wall, last_loss)


@dataclass
class _Session:
    """One call of `train`: where its checkpoints go, its optimiser, and what each checkpoint records."""

    ctx: StageContext
    spec: TrainSpec
    folder: str
    prefix: str  # of the checkpoint files: "<name>_" or ""
    modules: dict[str, nn.Module]  # saved and restored: the model and its aux modules
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    start: int = 0  # the step this segment starts at
    first_loss: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # the earlier trained segments
    facts: dict[str, Any] = field(default_factory=dict)  # data_facts of the training data

    @property
    def final_name(self) -> str:
        return f"{self.prefix}final.pt"

    @property
    def last_name(self) -> str:
        return f"{self.prefix}last.pt"

    def payload(self, step: int, final: bool, final_loss: float | None) -> dict[str, Any]:
        spec, ctx = self.spec, self.ctx
        return {
            "stage": spec.stage, "kind": spec.kind, "step": step, "final": final,
            "models": {key: tensor_state(module) for key, module in self.modules.items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
            "config": ctx.config_dict, "uid": weights_digest(spec.model) if final else "", "upstream": spec.upstream,
            "extra": spec.extra, "first_loss": self.first_loss, "final_loss": final_loss,
            "data_fingerprint": self.facts["fingerprint"], "data": self.facts,
            "history": [*self.history, {"from_step": self.start, "to_step": step, "seed": ctx.cfg.seed}],
        }


def _open(ctx: StageContext, spec: TrainSpec) -> _Session:
    loop = spec.loop
    optimizer = torch.optim.AdamW(spec.model.parameters(), lr=loop.lr, weight_decay=loop.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, loop))
    return _Session(ctx=ctx, spec=spec, folder=spec.folder or spec.stage,
                    prefix=f"{spec.name}_" if spec.name else "", modules={"model": spec.model, **spec.aux_modules},
                    optimizer=optimizer, scheduler=scheduler)


def _refuse_shortening(session: _Session, final: dict[str, Any] | None) -> None:
    spec, steps = session.spec, session.spec.loop.steps
    if final is not None and final["step"] > steps:
        raise CheckpointError(
            f"{session.ctx.checkpoints.path(session.folder, session.final_name)}: trained to step {final['step']}, "
            f"but {spec.kind}.steps is {steps}: training cannot be shortened; set {spec.kind}.steps >= "
            f"{final['step']} (to train longer) or use a fresh --run-dir (or TRAIN_RUN_NAME)")


def _reuse(session: _Session, final: dict[str, Any]) -> LoopOutcome:
    """The final checkpoint is of exactly the asked steps: its weights, nothing trained."""
    _restore_modules(session.modules, final)
    session.ctx.tracker.line(f"[{session.spec.stage}] {session.folder}/{session.final_name} exists: reusing it "
                             f"(step {final['step']})")
    return LoopOutcome(uid=final["uid"], steps=final["step"], first_loss=final["first_loss"],
                       final_loss=final["final_loss"], wall_s=0.0, samples_per_s=None,
                       extra=final.get("extra", {}), resumed_from=final["step"])


def _resume(session: _Session, last: dict[str, Any] | None, final: dict[str, Any] | None) -> None:
    """Continue the furthest of last.pt and a shorter final.pt (a longer run's last.pt is past its old
    final.pt): weights, optimiser, schedule position, RNG, first loss and history."""
    steps = session.spec.loop.steps
    candidates = [p for p in (last, final) if p is not None and p["step"] <= steps]
    if not candidates:
        return
    payload = max(candidates, key=lambda p: p["step"])
    _restore_modules(session.modules, payload)
    session.optimizer.load_state_dict(payload["optimizer"])
    session.scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
    session.start, session.first_loss = payload["step"], payload["first_loss"]
    session.history = list(payload.get("history", []))
    name = session.final_name if payload is final else session.last_name
    how = "training longer from" if payload is final else "resuming"
    session.ctx.tracker.line(f"[{session.spec.stage}] {how} {session.folder}/{name} at step {session.start}/{steps}"
                             + _seed_note(payload, session.ctx.cfg.seed))


def _run_steps(session: _Session) -> tuple[float, float | None]:
    """The steps from `session.start` to the end: (wall seconds, the last logged loss)."""
    ctx, spec, loop = session.ctx, session.spec, session.spec.loop
    wrapped = _wrap(spec.model, ctx.runtime)
    fail_step = max(loop.steps // 2, 1)
    window = _LossWindow(ctx.runtime.device)
    loop_start = time.perf_counter()
    last_loss: float | None = None
    spec.model.train()
    ctx.stop.in_loop = True  # SIGTERM now waits for the end of the step (see training.run.stopping)
    try:
        for step in range(session.start, loop.steps):
            loss = _step(session, wrapped, step)
            window.add(loss)
            done = step + 1
            ctx.tracker.step(done, loop.steps)
            if done % loop.log_every == 0 or done == loop.steps:
                last_loss = _log_window(session, window, done)
            elif done == session.start + 1:  # an early line so a person sees the stage move (its first step includes warm-up)
                ctx.tracker.progress(spec.stage, done, loop.steps, loss.item(), samples_per_s=None, steps_per_s=None,
                                     print_line=True)
            _checkpoint_or_stop(session, done, fail_step, last_loss)
    finally:
        ctx.stop.in_loop = False
    return time.perf_counter() - loop_start, last_loss


def _wrap(model: nn.Module, runtime: Runtime) -> nn.Module:
    """The module the loss sees: DDP across ranks, compiled when the runtime says so."""
    wrapped: nn.Module = model
    if runtime.distributed:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
    return runtime.maybe_compile(wrapped)


def _step(session: _Session, wrapped: nn.Module, step: int) -> torch.Tensor:
    """One optimiser step on this rank's slice of the global batch of `step`; the loss is not synced."""
    ctx, spec, loop, runtime = session.ctx, session.spec, session.spec.loop, session.ctx.runtime
    draw = BatchDraw(ctx.cfg.seed + spec.seed_salt, step, loop.batch_size, runtime.rank, runtime.world_size,
                     runtime.device)
    with runtime.autocast() if spec.autocast else contextlib.nullcontext():
        loss = spec.loss_fn(wrapped, draw)
    session.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if loop.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(spec.model.parameters(), loop.grad_clip)
    session.optimizer.step()
    session.scheduler.step()
    if spec.after_step is not None:
        spec.after_step()
    return loss


class _LossWindow:
    """The losses since the last progress line, summed on the device (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.steps = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach().float()
        self.steps += 1

    def close(self, runtime: Runtime) -> tuple[float, float]:
        """(mean loss, steps/s) of the window, then a fresh window."""
        # note: a CPU-GPU sync point, once per window; under DDP the mean over ranks (the global batch)
        loss = runtime.mean_across_ranks(self.total / self.steps).item()
        steps_per_s = self.steps / max(time.perf_counter() - self.started, 1e-9)
        self.total.zero_()
        self.steps, self.started = 0, time.perf_counter()
        return loss, steps_per_s


def _log_window(session: _Session, window: _LossWindow, done: int) -> float:
    """A progress line and the W&B metrics for the window ending at step `done`; returns its mean loss."""
    ctx, spec, loop = session.ctx, session.spec, session.spec.loop
    loss, steps_per_s = window.close(ctx.runtime)
    session.first_loss = loss if session.first_loss is None else session.first_loss
    ctx.tracker.progress(spec.stage, done, loop.steps, loss, samples_per_s=steps_per_s * loop.batch_size,
                         steps_per_s=steps_per_s, print_line=True)
    ctx.tracker.log_metrics({f"{spec.stage}/{spec.name or 'train'}_loss": loss,
                             f"{spec.stage}/lr": session.scheduler.get_last_lr()[0], f"{spec.stage}/step": done})
    return loss


def _checkpoint_or_stop(session: _Session, done: int, fail_step: int, last_loss: float | None) -> None:
    """After a step short of the end: last.pt every ckpt_every steps, the TRAIN_FAIL_AT_STAGE hook at
    `fail_step`, and a stop asked on any rank saves last.pt and raises Terminated (every rank at this step)."""
    ctx, spec, loop, folder, last_name = session.ctx, session.spec, session.spec.loop, session.folder, session.last_name
    if done % loop.ckpt_every == 0 and done < loop.steps:
        ctx.checkpoints.save(folder, last_name, session.payload(done, False, last_loss))
    if done == fail_step and done < loop.steps:
        ctx.maybe_fail(spec.stage, f"at step {done}/{loop.steps} of {folder}/{session.prefix or 'model'}")
    if ctx.runtime.any_rank(ctx.stop.requested) and done < loop.steps:  # a collective: every rank, every step
        ctx.checkpoints.save(folder, last_name, session.payload(done, False, last_loss))
        raise Terminated(f"received {ctx.stop.signal_name or 'a stop on another rank'}; "
                         f"saved {folder}/{last_name} at step {done}")


def _save_final(session: _Session, wall: float, last_loss: float | None) -> LoopOutcome:
    """final.pt, then its marker (what the pipeline compares to skip the stage); last.pt is no longer needed."""
    ctx, spec, loop, folder = session.ctx, session.spec, session.spec.loop, session.folder
    trained = loop.steps - session.start
    payload = session.payload(loop.steps, True, last_loss)
    ctx.checkpoints.save(folder, session.final_name, payload)
    facts = session.facts
    ctx.checkpoints.write_marker(folder, session.final_name.replace(".pt", ".json"),
                                 {"uid": payload["uid"], "upstream": {**spec.upstream, "data": facts["fingerprint"]},
                                  "step": loop.steps, "history": payload["history"], "data": facts,
                                  "config": ctx.config_dict})
    ctx.checkpoints.remove(folder, session.last_name)
    ctx.runtime.barrier()
    return LoopOutcome(uid=payload["uid"], steps=loop.steps, first_loss=session.first_loss, final_loss=last_loss,
                       wall_s=wall, samples_per_s=(trained * loop.batch_size / wall) if trained else None,
                       extra=spec.extra, resumed_from=session.start)


def _usable_checkpoints(ctx: StageContext, spec: TrainSpec, folder: str,
                        names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """This stage's checkpoints that match the config (steps may differ), the train/val data and the upstream
    weights; any other is stale and removed."""
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        if not ctx.checkpoints.exists(folder, name):
            continue
        stored = ctx.checkpoints.load(folder, name, config=ctx.config_dict, kind=spec.kind, resuming=True)
        if not same_training_data(stored.get("data_fingerprint"), ctx.data):
            why = "from other data files"  # a result of other data files is stale: train afresh
        elif stored.get("upstream", {}) != spec.upstream:
            why = "from other upstream weights (an earlier stage was retrained)"
        else:
            found[name] = stored
            continue
        ctx.tracker.line(f"[{spec.stage}] {folder}/{name} was made {why}: discarded")
        ctx.checkpoints.remove(folder, name)
    return found


def _seed_note(payload: dict[str, Any], seed: int) -> str:
    history = payload.get("history") or [{"seed": payload.get("config", {}).get("seed")}]
    before = history[-1].get("seed")
    return "" if before == seed else f" (seed {before} before, {seed} from here on)"


def _restore_modules(modules: dict[str, nn.Module], payload: dict[str, Any]) -> None:
    for key, module in modules.items():
        module.load_state_dict(payload["models"][key])


def weights_digest(model: nn.Module) -> str:
    """sha256 of the weights: the same on every DDP rank, and it changes whenever the model is retrained."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):  # neuralop adds a metadata dict to its state dict
            continue
        digest.update(key.encode())
        if tensor.is_complex():  # FNO spectral weights
            tensor = torch.view_as_real(tensor)
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def tensor_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without non-tensor entries (neuralop stores its constructor arguments, functions
    included, which would force an unsafe torch.load)."""
    return {key: value for key, value in module.state_dict().items() if isinstance(value, torch.Tensor)}
