"""Use a trained run: load its checkpoints and roll the surrogate out from an initial condition.

    from training.evaluation.inference import TrainedSurrogate
    model = TrainedSurrogate.load("runs/burgers32", method="operator+diffusion", device="cuda")
    frames = model.rollout(u0, steps=40)  # u0 [X] or [B, X] -> [B, 41, X], physical units, frame 0 = u0

A run dir is what the pipeline writes (`<run-dir>/checkpoints/<stage>/final.pt`); `fetch_run` brings a
run's checkpoints from the bucket first. The config comes from the checkpoints themselves, so no YAML is
needed, and loading goes through the stages' own loaders (`training.stages.upstream`), which check every
checkpoint against that config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from run_contract import STAGES
from training.config import Config, ConfigError, config_from_dict
from training.evaluation.surrogates import LatentSurrogate, PhysicalStepper, Surrogate
from training.models.fno import FNOStepper
from training.run.context import StageContext
from training.run.paths import RunPaths
from training.run.runtime import Runtime
from training.run.tracking import Tracker
from training.run.wandb_run import WandbRun
from training.stages.registry import FNO
from training.stages.upstream import load_autoencoder, load_operator
from training.store.checkpoint import CheckpointError
from training.store.checkpoint_store import CheckpointStore
from training.store.datafiles import DataPlan

_NO_DATA = DataPlan(files={}, sha256={}, frames=0, resolution=0, dt=0.0, nu=None)  # loaders need no data


class RunNotFoundError(FileNotFoundError):
    """The run dir or bucket prefix holds no trained checkpoints."""


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for, but torch sees no CUDA device; use 'cpu' or 'auto'")
    return device


def run_config(run_dir: Path) -> Config:
    """The config the run was trained with, read from its autoencoder's final marker (or checkpoint)."""
    folder = Path(run_dir) / "checkpoints" / "autoencoder"
    marker = folder / "final.json"
    if marker.is_file():
        raw = json.loads(marker.read_text()).get("config")
    elif (folder / "final.pt").is_file():
        raw = torch.load(folder / "final.pt", map_location="cpu", weights_only=True).get("config")
    else:
        raise RunNotFoundError(f"{folder}/final.pt not found: {run_dir} holds no finished autoencoder "
                               "(train the run first, or fetch it from the bucket with --run NAME)")
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise CheckpointError(f"{marker}: its config no longer loads with this code ({exc})") from None


def trained_data_facts(run_dir: Path) -> dict[str, Any]:
    """What the run's models were trained on (nu, dt, domain, resolution):
    training.store.checkpoint.data_facts, recorded in the autoencoder's final marker; {} for runs made before it was recorded."""
    marker = Path(run_dir) / "checkpoints" / "autoencoder" / "final.json"
    return dict(json.loads(marker.read_text()).get("data") or {}) if marker.is_file() else {}


def load_context(run_dir: str | Path, *, device: str | torch.device = "cpu", run_name: str | None = None,
                 cfg: Config | None = None) -> StageContext:
    """A read-only stage context over a finished run dir: what the stages' loaders need, and no data."""
    run_dir = Path(run_dir)
    cfg = cfg or run_config(run_dir)
    paths = RunPaths(run_dir=run_dir, data_dir=run_dir / "data")
    name = run_name or cfg.name
    runtime = Runtime(device=pick_device(device), rank=0, world_size=1, local_rank=0, bf16=False, compile=False)
    # is_main=False: nothing is written to the run dir (no status, no logs, no checkpoint changes).
    tracker = Tracker(paths, name, is_main=False, wandb=WandbRun.disabled())
    store = CheckpointStore(paths, name, is_main=False)
    return StageContext(cfg=cfg, paths=paths, runtime=runtime, tracker=tracker, checkpoints=store, data=_NO_DATA)


def fetch_run(run_name: str, run_dir: str | Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """Download runs/<run_name>/checkpoints/ from the bucket (B2_* in `environ`) into `run_dir`."""
    from training.store.bucket import ObjectStore

    run_dir = Path(run_dir)
    store = CheckpointStore(RunPaths(run_dir=run_dir, data_dir=run_dir / "data"), run_name, is_main=True,
                            remote=ObjectStore.from_env(environ), log=lambda _line: None)
    fetched = store.fetch_missing(list(STAGES))
    if not (run_dir / "checkpoints" / "autoencoder" / "final.pt").is_file():
        raise RunNotFoundError(f"bucket {store.remote.bucket}: no runs/{run_name}/checkpoints/autoencoder/final.pt "
                               "(is the run name right, and did its autoencoder finish?)")
    return fetched


class _Placeholder(torch.nn.Module):
    """Stands in for the FNO baseline, which only the evaluate stage trains: its method is never picked."""


NO_FNO = _Placeholder()


def trained_methods(ctx: StageContext) -> list[Surrogate]:
    """The evaluate stage's methods for this run (training.stages.evaluate.build_methods), with the run's FNO
    baseline when it trained one (checkpoints/evaluate/fno_final.pt), without it otherwise."""
    from training.stages.evaluate import build_methods

    fno = load_fno(ctx)
    methods, _ = build_methods(ctx, fno if fno is not None else NO_FNO)
    return [m for m in methods if not (isinstance(m, PhysicalStepper) and m.model is NO_FNO)]


def load_fno(ctx: StageContext) -> FNOStepper | None:
    final = f"{FNO.name}_final.pt"
    if not ctx.checkpoints.exists(FNO.stage, final):
        return None
    payload = ctx.checkpoints.load(FNO.stage, final, config=ctx.config_dict, kind=FNO.name)
    model = FNOStepper(ctx.cfg.fno)
    model.load_state_dict(payload["models"]["model"])
    return model.to(ctx.runtime.device).eval()


@dataclass
class TrainedSurrogate:
    """One trained method of a run (autoencoder + operator, optionally refined), physical field in and out."""

    method: Surrogate
    config: Config
    device: torch.device
    data: dict[str, Any]  # trained_data_facts: nu, dt, domain, resolution (empty for older runs)

    @classmethod
    def load(cls, run_dir: str | Path, *, method: str = "operator", device: str | torch.device = "cpu",
             seed: int | None = None) -> TrainedSurrogate:
        """`method`: "operator" (autoencoder + operator alone) or any other method the evaluate stage scores
        for this run, e.g. "operator+diffusion" (EDM Heun refinement), "operator+student1"/"operator+student2"
        (the distilled student), "fno"; `seed` seeds a refiner's noise (default evaluate.seed)."""
        ctx = load_context(run_dir, device=device)
        if method == "operator":  # needs no later stage
            chosen: Surrogate = LatentSurrogate("operator", load_autoencoder(ctx).model, load_operator(ctx).model)
        else:
            available = {m.name: m for m in trained_methods(ctx) if m.name != "persistence"}
            if method not in available:
                raise ValueError(f"method {method!r}: this run has {', '.join(sorted(available))}")
            chosen = available[method]
        if seed is not None and hasattr(chosen, "seed"):
            chosen.seed = seed
        return cls(method=chosen, config=ctx.cfg, device=ctx.runtime.device, data=trained_data_facts(run_dir))

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def resolution(self) -> int | None:
        return self.data.get("resolution")

    @property
    def dt(self) -> float | None:
        """Time between the frames it predicts (physical units of its training data)."""
        return self.data.get("dt")

    def rollout(self, u0: torch.Tensor | np.ndarray, steps: int) -> torch.Tensor | np.ndarray:
        """u0 [X] or [B, X] -> [B, steps + 1, X] in physical units, frame 0 = u0; numpy in, numpy out.

        The same call the evaluation makes: the rollout stays in latent space and decodes every frame.
        """
        as_numpy = isinstance(u0, np.ndarray)
        u = torch.as_tensor(u0, dtype=torch.float32)
        if u.ndim == 1:
            u = u.unsqueeze(0)
        if u.ndim != 2:
            raise ValueError(f"u0 must be [X] or [B, X], got shape {tuple(u.shape)}")
        if self.resolution and u.shape[1] != self.resolution:
            raise ValueError(f"u0 has {u.shape[1]} grid points; {self.name} was trained on {self.resolution}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        reset = getattr(self.method, "reset_noise", None)
        if reset is not None:
            reset()  # the same u0 and seed give the same rollout
        frames = self.method.rollout(u.to(self.device), steps).float().cpu()
        return frames.numpy() if as_numpy else frames
