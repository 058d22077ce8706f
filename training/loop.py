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

from training.checkpoint import CheckpointError, data_facts, same_training_data
from training.config import TrainLoopConfig
from training.context import StageContext
from training.runtime import rng_state, set_rng_state
from training.schedule import BatchDraw, lr_factor
from training.stopping import Terminated

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
    runtime, tracker, loop = ctx.runtime, ctx.tracker, spec.loop
    folder = spec.folder or spec.stage
    prefix = f"{spec.name}_" if spec.name else ""
    final_name, last_name = f"{prefix}final.pt", f"{prefix}last.pt"
    modules = {"model": spec.model, **spec.aux_modules}
    optimizer = torch.optim.AdamW(spec.model.parameters(), lr=loop.lr, weight_decay=loop.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, loop))

    found = _usable_checkpoints(ctx, spec, folder, (final_name, last_name))
    runtime.barrier()  # no rank looks again before rank 0 has removed a stale file
    final = found.get(final_name)
    if final is not None and final["step"] > loop.steps:
        raise CheckpointError(
            f"{ctx.checkpoints.path(folder, final_name)}: trained to step {final['step']}, but {spec.kind}.steps is "
            f"{loop.steps}: training cannot be shortened; set {spec.kind}.steps >= {final['step']} (to train longer) "
            "or use a fresh --run-dir (or TRAIN_RUN_NAME)")
    if final is not None and final["step"] == loop.steps:
        _restore_modules(modules, final)
        tracker.line(f"[{spec.stage}] {folder}/{final_name} exists: reusing it (step {final['step']})")
        return LoopOutcome(uid=final["uid"], steps=final["step"], first_loss=final["first_loss"],
                           final_loss=final["final_loss"], wall_s=0.0, samples_per_s=None,
                           extra=final.get("extra", {}), resumed_from=final["step"])
    start, first_loss, history = 0, None, []
    candidates = [p for p in (found.get(last_name), final) if p is not None and p["step"] <= loop.steps]
    if candidates:
        payload = max(candidates, key=lambda p: p["step"])  # a longer run's last.pt is past its old final.pt
        _restore_modules(modules, payload)
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"])
        start, first_loss, history = payload["step"], payload["first_loss"], list(payload.get("history", []))
        name = final_name if payload is final else last_name
        how = "training longer from" if payload is final else "resuming"
        tracker.line(f"[{spec.stage}] {how} {folder}/{name} at step {start}/{loop.steps}"
                     + _seed_note(payload, ctx.cfg.seed))
    facts = data_facts(ctx.data)

    wrapped: nn.Module = spec.model
    if runtime.distributed:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        wrapped = DistributedDataParallel(spec.model, device_ids=device_ids)
    wrapped = runtime.maybe_compile(wrapped)

    def payload_at(step: int, final: bool, final_loss: float | None) -> dict[str, Any]:
        return {
            "stage": spec.stage, "kind": spec.kind, "step": step, "final": final,
            "models": {key: tensor_state(module) for key, module in modules.items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
            "config": ctx.config_dict, "uid": weights_digest(spec.model) if final else "", "upstream": spec.upstream,
            "extra": spec.extra, "first_loss": first_loss, "final_loss": final_loss,
            "data_fingerprint": facts["fingerprint"], "data": facts,
            "history": [*history, {"from_step": start, "to_step": step, "seed": ctx.cfg.seed}],
        }

    fail_step = max(loop.steps // 2, 1)
    window_loss = torch.zeros((), device=runtime.device)
    window_steps, window_start, loop_start = 0, time.perf_counter(), time.perf_counter()
    last_loss: float | None = None
    spec.model.train()
    ctx.stop.in_loop = True  # SIGTERM now waits for the end of the step (see training.stopping)
    try:
        for step in range(start, loop.steps):
            draw = BatchDraw(ctx.cfg.seed + spec.seed_salt, step, loop.batch_size, runtime.rank,
                             runtime.world_size, runtime.device)
            with runtime.autocast() if spec.autocast else contextlib.nullcontext():
                loss = spec.loss_fn(wrapped, draw)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if loop.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(spec.model.parameters(), loop.grad_clip)
            optimizer.step()
            scheduler.step()
            if spec.after_step is not None:
                spec.after_step()
            window_loss += loss.detach().float()
            window_steps += 1
            done = step + 1
            tracker.step(done, loop.steps)
            if done % loop.log_every == 0 or done == loop.steps:
                # note: a CPU-GPU sync point, once per window; under DDP the mean over ranks (the global batch)
                last_loss = runtime.mean_across_ranks(window_loss / window_steps).item()
                first_loss = last_loss if first_loss is None else first_loss
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                steps_per_s = window_steps / elapsed
                tracker.progress(spec.stage, done, loop.steps, last_loss, samples_per_s=steps_per_s * loop.batch_size,
                                 steps_per_s=steps_per_s, print_line=True)
                tracker.log_metrics({f"{spec.stage}/{spec.name or 'train'}_loss": last_loss,
                                     f"{spec.stage}/lr": scheduler.get_last_lr()[0], f"{spec.stage}/step": done})
                window_loss.zero_()
                window_steps, window_start = 0, time.perf_counter()
            elif done == start + 1:  # an early line, so a person sees the stage move (first step includes warm-up)
                tracker.progress(spec.stage, done, loop.steps, loss.item(), samples_per_s=None, steps_per_s=None,
                                 print_line=True)
            if done % loop.ckpt_every == 0 and done < loop.steps:
                ctx.checkpoints.save(folder, last_name, payload_at(done, False, last_loss))
            if done == fail_step and done < loop.steps:
                ctx.maybe_fail(spec.stage, f"at step {done}/{loop.steps} of {folder}/{prefix or 'model'}")
            if runtime.any_rank(ctx.stop.requested) and done < loop.steps:  # every rank stops at this step
                ctx.checkpoints.save(folder, last_name, payload_at(done, False, last_loss))
                raise Terminated(f"received {ctx.stop.signal_name or 'a stop on another rank'}; "
                                 f"saved {folder}/{last_name} at step {done}")
    finally:
        ctx.stop.in_loop = False
    wall = time.perf_counter() - loop_start
    trained = loop.steps - start
    payload = payload_at(loop.steps, True, last_loss)
    ctx.checkpoints.save(folder, final_name, payload)
    ctx.checkpoints.write_marker(folder, final_name.replace(".pt", ".json"),
                                 {"uid": payload["uid"], "upstream": {**spec.upstream, "data": facts["fingerprint"]},
                                  "step": loop.steps, "history": payload["history"], "data": facts,
                                  "config": ctx.config_dict})
    ctx.checkpoints.remove(folder, last_name)
    runtime.barrier()
    return LoopOutcome(uid=payload["uid"], steps=loop.steps, first_loss=first_loss, final_loss=last_loss,
                       wall_s=wall, samples_per_s=(trained * loop.batch_size / wall) if trained else None,
                       extra=spec.extra, resumed_from=start)


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
