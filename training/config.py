"""Typed run configuration loaded from YAML, strict like nanoGPT's but without `exec`.

Every section is a dataclass; unknown keys and wrong types are errors that name the dotted key
(`operator.lr: expected float, got str`). Numbers such as `1e-3` are read as floats (PyYAML follows
YAML 1.1, which would read them as strings).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from run_contract import STAGES  # the contract names the stages; their order is the run order
from training.stages.registry import LOOP_SECTIONS


class ConfigError(ValueError):
    """The configuration file is malformed; the message names the key and what is allowed."""


# The PDEs the pipeline trains on; a data file names its own in the `equation` attribute (training.data.layout).
EQUATION_BURGERS = "burgers"  # 1D viscous Burgers, PDEBench's convention (diffusion nu / pi on [0, 1))
EQUATION_KS = "ks"  # 1D Kuramoto-Sivashinsky u_t = -u u_x - u_xx - u_xxxx on [0, L)
EQUATIONS = (EQUATION_BURGERS, EQUATION_KS)


@dataclass
class DataConfig:
    """Which files to train on; the Ansible `data` role reads `remote_prefix` and the file lists."""

    remote_prefix: str = "datasets/burgers1d_nu0.01"  # bucket prefix the files live under
    equation: str = EQUATION_BURGERS  # which PDE the files hold, one of EQUATIONS
    train: list[str] = field(default_factory=lambda: ["burgers1d_train_000.h5"])
    val: list[str] = field(default_factory=lambda: ["burgers1d_val_000.h5"])
    test: list[str] = field(default_factory=lambda: ["burgers1d_test_000.h5"])
    nu: float | None = 0.01  # expected PDEBench viscosity (Burgers; null for KS); a file that differs is an error
    t_stride: int = 5  # keep every t_stride-th stored frame (PDEBench 201 -> 41 frames)
    x_stride: int = 8  # keep every x_stride-th grid point
    max_frames: int | None = None  # frames read before t_stride (None: all)
    max_train_samples: int | None = None  # cap trajectories read from the train split
    max_eval_samples: int | None = None  # cap trajectories read from val and test


@dataclass
class TrainLoopConfig:
    """Optimiser and loop settings shared by every trained stage."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    ckpt_every: int = 500
    log_every: int = 50


@dataclass
class AutoencoderConfig(TrainLoopConfig):
    latent_dim: int = 32  # channels of the latent; "burgers32"
    width: int = 64
    levels: int = 2  # stride-2 downsamplings: latent length = resolution / 2**levels
    blocks: int = 1  # residual blocks per level


@dataclass
class OperatorConfig(TrainLoopConfig):
    width: int = 128
    blocks: int = 4
    kernel_size: int = 5
    unroll_steps: int = 4  # pushforward horizon; 1 disables the unrolled loss
    unroll_weight: float = 1.0
    input_noise: float = 0.0  # std of Gaussian noise on training inputs (normalised latent units)


@dataclass
class PDERefinerConfig(TrainLoopConfig):
    """PDE-Refiner proper (Lippe et al. 2023), trained by the diffusion stage beside the residual refiner.

    One network predicts z_{t+1} from z_t (k = 0, MSE) and refines it over `levels` noise levels
    sigma_k = min_noise^(k/levels); `mse_baseline` also trains the same backbone on k = 0 alone, the
    paper's control. Nested under `diffusion` so the stage's checkpoint checks cover these keys too.
    """

    enabled: bool = False
    levels: int = 3  # K: refinement levels (K + 1 network evaluations per time step)
    min_noise: float = 4.0e-7  # sigma_K, in units of the unit-std one-step change (pdearena's default)
    width: int = 128  # backbone: set it to the operator's for a like-for-like comparison
    blocks: int = 4
    kernel_size: int = 5
    ema_decay: float = 0.995
    mse_baseline: bool = True


@dataclass
class DiffusionConfig(TrainLoopConfig):
    width: int = 128
    blocks: int = 4
    kernel_size: int = 5
    sigma_min: float = 0.002  # noise levels in units of the normalised residual (EDM)
    sigma_max: float = 10.0
    rho: float = 7.0
    p_mean: float = -1.2  # log-normal training noise distribution
    p_std: float = 1.2
    # Training noise levels: this share log-uniform on [sigma_min, sigma_max], this share exactly the
    # sampler's levels, the rest EDM's log-normal (see models.diffusion.training_sigma for why).
    sigma_uniform_weight: float = 0.3
    sigma_sampler_weight: float = 0.2
    sample_steps: int = 4  # Heun refinement steps at evaluation
    refine_sigma: float = 0.2  # refinement starts here (PDE-Refiner); >= sigma_max: sample from pure noise
    ema_decay: float = 0.999
    cond_unroll: int = 1  # also train on the operator's own 1..n-1 step predictions as previous state
    pderefiner: PDERefinerConfig = field(default_factory=PDERefinerConfig)


@dataclass
class DistillConfig(TrainLoopConfig):
    num_scales: int = 18  # N: teacher's discretised noise schedule
    target_ema: float = 0.95  # mu: EMA of the target network
    student_steps: list[int] = field(default_factory=lambda: [1, 2])
    mid_sigma: float = 0.2  # re-noising before a 2nd step from pure noise (refine_sigma < sigma_max: unused, the
    # student re-noises its estimate to refine_sigma as its teacher does; see models.consistency)


@dataclass
class FNOConfig(TrainLoopConfig):
    """Physical-space FNO baseline, trained in the evaluate stage on the same data and step budget."""

    modes: int = 16
    width: int = 64
    layers: int = 4
    unroll_steps: int = 4


@dataclass
class EvaluateConfig:
    rollout_steps: int = 40  # PDEBench 41-frame protocol: frame 0 plus 40 predicted
    corr_thresholds: list[float] = field(default_factory=lambda: [0.8, 0.9, 0.95])
    batch_size: int = 64
    plots: bool = True
    seed: int = 1234  # noise of the diffusion samplers at evaluation, and the bootstrap's resampling
    ensemble_size: int = 4  # samples per stochastic method (ensemble-mean nRMSE, CRPS, spread/skill); 1: none
    pdebench_initial_step: int = 10  # PDEBench's context frames (its 1D configs' initial_step)
    bootstrap_resamples: int = 1000  # paired bootstrap over test trajectories, for every interval
    confidence_level: float = 0.95


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool | None = None  # None: on for CUDA, off on CPU
    compile: bool | None = None  # None: on for CUDA, off on CPU
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    status_every_s: float = 5.0


@dataclass
class WandbConfig:
    project: str = "universal-simulator"
    entity: str | None = None


@dataclass
class Config:
    name: str = "burgers32"
    seed: int = 0
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # what `all` runs, in order
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    fno: FNOConfig = field(default_factory=FNOConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e-3 as a float (YAML 1.2 rule), not as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def _construct_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    text = loader.construct_scalar(node)
    try:
        return int(text)
    except ValueError:
        return float(yaml.SafeLoader.construct_yaml_float(loader, node))


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_number)


def read_yaml(path: str | Path) -> Any:
    """A YAML file read the way configs are (1e-3 is a float); sweep files use it too, so their override
    values reach the config as the numbers they look like."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_dict(raw: dict[str, Any]) -> Config:
    cfg = _build(Config, raw, prefix="")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Checks of values (not types) that would otherwise fail hours into a run."""
    bad = [stage for stage in cfg.stages if stage not in STAGES]
    if bad:
        raise ConfigError(f"stages: unknown stage(s) {bad}; valid stages: {', '.join(STAGES)}")
    for section in LOOP_SECTIONS:
        loop: TrainLoopConfig = getattr(cfg, section)
        for key in ("steps", "batch_size", "ckpt_every", "log_every"):
            if getattr(loop, key) < 1:
                raise ConfigError(f"{section}.{key}: must be >= 1, got {getattr(loop, key)}")
        if loop.lr <= 0:
            raise ConfigError(f"{section}.lr: must be > 0, got {loop.lr}")
    _validate_equation(cfg.data)
    for key in ("t_stride", "x_stride"):
        if getattr(cfg.data, key) < 1:
            raise ConfigError(f"data.{key}: must be >= 1, got {getattr(cfg.data, key)}")
    for split in ("train", "val", "test"):
        if not getattr(cfg.data, split):
            raise ConfigError(f"data.{split}: needs at least one file name")
    if cfg.runtime.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"runtime.device: expected one of auto, cpu, cuda, got {cfg.runtime.device!r}")
    if not cfg.diffusion.sigma_min < cfg.diffusion.refine_sigma:
        raise ConfigError("diffusion.refine_sigma: must be > diffusion.sigma_min")
    if not 0 < cfg.diffusion.sigma_min < cfg.diffusion.sigma_max:
        raise ConfigError("diffusion.sigma_min/sigma_max: need 0 < sigma_min < sigma_max")
    if cfg.diffusion.cond_unroll < 1:
        raise ConfigError(f"diffusion.cond_unroll: must be >= 1, got {cfg.diffusion.cond_unroll}")
    if cfg.diffusion.sample_steps < 1 or cfg.distill.num_scales < 2:
        raise ConfigError("diffusion.sample_steps must be >= 1 and distill.num_scales >= 2")
    _validate_noise_mixture(cfg.diffusion)
    _validate_pderefiner(cfg.diffusion.pderefiner)
    bad_steps = [s for s in cfg.distill.student_steps if s not in (1, 2)]
    if bad_steps:
        raise ConfigError(f"distill.student_steps: allowed values are 1 and 2, got {bad_steps}")
    if not cfg.diffusion.sigma_min < cfg.distill.mid_sigma < cfg.diffusion.sigma_max:
        raise ConfigError("distill.mid_sigma: must lie between diffusion.sigma_min and diffusion.sigma_max")
    _validate_evaluate(cfg.evaluate)


def _validate_evaluate(evaluate: EvaluateConfig) -> None:
    for key, least in (("rollout_steps", 1), ("batch_size", 1), ("ensemble_size", 1), ("pdebench_initial_step", 1),
                       ("bootstrap_resamples", 100)):
        if getattr(evaluate, key) < least:
            raise ConfigError(f"evaluate.{key}: must be >= {least}, got {getattr(evaluate, key)}")
    if not 0.5 <= evaluate.confidence_level < 1:
        raise ConfigError(f"evaluate.confidence_level: must lie in [0.5, 1), got {evaluate.confidence_level}")
    if not evaluate.corr_thresholds or not all(0 < t < 1 for t in evaluate.corr_thresholds):
        raise ConfigError(f"evaluate.corr_thresholds: need one or more values in (0, 1), got {evaluate.corr_thresholds}")


def _validate_noise_mixture(diffusion: DiffusionConfig) -> None:
    weights = {"sigma_uniform_weight": diffusion.sigma_uniform_weight,
               "sigma_sampler_weight": diffusion.sigma_sampler_weight}
    for key, weight in weights.items():
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"diffusion.{key}: must lie in [0, 1], got {weight}")
    if sum(weights.values()) > 1.0:
        raise ConfigError("diffusion.sigma_uniform_weight + diffusion.sigma_sampler_weight: must be <= 1 "
                          f"(the rest is log-normal), got {sum(weights.values())}")


def _validate_pderefiner(refiner: PDERefinerConfig) -> None:
    where = "diffusion.pderefiner"
    for key in ("steps", "batch_size", "ckpt_every", "log_every", "levels", "width", "blocks", "kernel_size"):
        if getattr(refiner, key) < 1:
            raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(refiner, key)}")
    if refiner.lr <= 0:
        raise ConfigError(f"{where}.lr: must be > 0, got {refiner.lr}")
    if not 0.0 < refiner.min_noise < 1.0:
        raise ConfigError(f"{where}.min_noise: must lie in (0, 1) (sigma_k = min_noise^(k/levels) decreases), "
                          f"got {refiner.min_noise}")
    if not 0.0 <= refiner.ema_decay < 1.0:
        raise ConfigError(f"{where}.ema_decay: must lie in [0, 1), got {refiner.ema_decay}")


def _validate_equation(data: DataConfig) -> None:
    if data.equation not in EQUATIONS:
        raise ConfigError(f"data.equation: expected one of {', '.join(EQUATIONS)}, got {data.equation!r}")
    if data.equation == EQUATION_BURGERS and not (data.nu is not None and data.nu > 0):
        raise ConfigError(f"data.nu: Burgers needs its viscosity, a number > 0, got {data.nu!r}")
    if data.equation == EQUATION_KS and data.nu is not None:
        raise ConfigError(f"data.nu: the KS equation has no viscosity; set data.nu: null, got {data.nu!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; allowed in {where}: {', '.join(sorted(names))}")
    values = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in raw.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [opt for opt in options if opt is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {type(value).__name__} ({value!r})")
    return value


def apply_overrides(tree: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`tree` with each `a.b.c: value` set; a key the config does not have is an error naming it."""
    result = yaml.safe_load(yaml.safe_dump(tree))  # a deep copy of plain data
    for dotted, value in overrides.items():
        node, parts = result, str(dotted).split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:depth]) or "the config"
                allowed = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a section)"
                raise ConfigError(f"override {dotted}: {where} has no key {part!r}; allowed: {allowed}")
            if depth == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return result


def check_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The config a run trains: `path` with its dotted overrides, validated (the launch checks it on the
    controller, before renting; it needs no torch)."""
    cfg = load_config(path)
    if not overrides:
        return cfg
    try:
        return config_from_dict(apply_overrides(cfg.to_dict(), overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path} with overrides: {exc}") from None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; used to name the keys two configs differ in."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
