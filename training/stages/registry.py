"""What the pipeline knows of each stage, stated once: its upstream, the config sections that decide its
result, whether it trains weights and the module that runs it.

The names and their run order are the instance contract's (`run_contract.STAGES`, also the heartbeat's
vocabulary): this module takes the order from there and refuses to import if the two disagree.
Standard library only, so `training.store.checkpoint` and `training.config` can import it: stage modules
are named here and imported when used (they pull in torch and the models).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import run_contract


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]  # stages whose final checkpoints its result depends on
    sections: tuple[str, ...]  # config sections that decide its result: a checkpoint must match them
    trains: bool  # trains to `<name>.steps` in training.optim.loop (its final checkpoint's step counts)
    module: str  # exposes run(ctx) -> StageResult
    final_checkpoint: bool = True  # False: the cache, which checks its own key instead


@dataclass(frozen=True)
class SideModel:
    """A model a stage trains besides its own result (its checkpoint kind and config section share its name)."""

    name: str
    stage: str  # the stage that trains it, into checkpoints/<stage>/<name>_final.pt
    sections: tuple[str, ...]


_DECIDE_AUTOENCODER = ("data", "autoencoder")
_STAGES = (
    Stage("autoencoder", (), _DECIDE_AUTOENCODER, trains=True, module="training.stages.autoencoder"),
    Stage("cache", ("autoencoder",), (), trains=False, module="training.stages.cache", final_checkpoint=False),
    Stage("operator", ("autoencoder",), (*_DECIDE_AUTOENCODER, "operator"), trains=True,
          module="training.stages.operator"),
    Stage("diffusion", ("autoencoder", "operator"), (*_DECIDE_AUTOENCODER, "operator", "diffusion"), trains=True,
          module="training.stages.diffusion"),
    Stage("distill", ("autoencoder", "operator", "diffusion"),
          (*_DECIDE_AUTOENCODER, "operator", "diffusion", "distill"), trains=True,
          module="training.stages.distill"),
    # Cheap to redo, so its seed and sampler settings count too.
    Stage("evaluate", ("autoencoder", "operator", "diffusion", "distill"),
          ("seed", *_DECIDE_AUTOENCODER, "operator", "diffusion", "distill", "fno", "evaluate"), trains=False,
          module="training.stages.evaluate"),
)
# The FNO baseline: trained inside evaluate (not a stage: the stage list is the instance contract's).
FNO = SideModel("fno", stage="evaluate", sections=("data", "fno"))
SIDE_MODELS = (FNO,)

if tuple(stage.name for stage in _STAGES) != run_contract.STAGES:
    raise ImportError(f"training.stages.registry lists {[s.name for s in _STAGES]}, but run_contract.STAGES "
                      f"is {list(run_contract.STAGES)}: one of them is out of date")
REGISTRY: dict[str, Stage] = {name: stage for name, stage in zip(run_contract.STAGES, _STAGES, strict=True)}
TRAINED_STAGES = tuple(name for name, stage in REGISTRY.items() if stage.trains)
# Every config section that is a training.config.TrainLoopConfig (steps, batch_size, lr, ...).
LOOP_SECTIONS = (*TRAINED_STAGES, *(model.name for model in SIDE_MODELS))


def get(name: str) -> Stage:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; valid stages: {', '.join(REGISTRY)}") from None


def upstream_of(name: str) -> tuple[str, ...]:
    return get(name).upstream


def sections_of(kind: str) -> tuple[str, ...]:
    """The config sections a checkpoint of `kind` (a stage, or a side model such as "fno") must match."""
    for model in SIDE_MODELS:
        if model.name == kind:
            return model.sections
    return get(kind).sections


def module_of(name: str) -> ModuleType:
    return importlib.import_module(get(name).module)

