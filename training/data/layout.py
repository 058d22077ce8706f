"""The on-disk layout shared with PDEBench's 1D Burgers files, named in one place.

PDEBench (`1D_Burgers_Sols_Nu0.01.hdf5`) stores `tensor` [N, T, X] float32, `x-coordinate` [X] (cell
centres of a periodic [0, 1) grid) and `t-coordinate` with T+1 entries: its solver saves frames at
t = 0, dt, ..., (T-1) dt and its time axis has one extra trailing entry. We write the same keys and the
same T+1 convention so that tools written for PDEBench read our shards unchanged.
"""

from __future__ import annotations

import re

TENSOR_KEY = "tensor"
X_KEY = "x-coordinate"
T_KEY = "t-coordinate"
REQUIRED_KEYS = (TENSOR_KEY, X_KEY, T_KEY)

# File attributes we add (PDEBench files carry none; their ν lives only in the file name).
ATTR_NU = "nu"
ATTR_GENERATOR = "generator"
ATTR_SEED = "seed"
ATTR_PARAMS = "generator_params_json"
# Which PDE a file holds (a name in training.config.EQUATIONS) and that PDE's parameters as JSON, so that
# evaluation can tell datasets apart. A file without them (PDEBench's, or ours from before) is Burgers.
ATTR_EQUATION = "equation"
ATTR_EQUATION_PARAMS = "equation_params_json"

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.json"

_NU_IN_NAME = re.compile(r"Nu([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


def shard_name(split: str, index: int, prefix: str = "burgers1d") -> str:
    """File name of shard `index` of `split`, e.g. burgers1d_train_000.h5 (ks1d_train_000.h5 for KS)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return f"{prefix}_{split}_{index:03d}.h5"


def shard_glob(split: str, prefix: str = "burgers1d") -> str:
    """Glob pattern matching every shard of `split`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return f"{prefix}_{split}_[0-9][0-9][0-9].h5"


def nu_from_file_name(name: str) -> float | None:
    """ν parsed from a PDEBench-style name such as 1D_Burgers_Sols_Nu0.01.hdf5, or None."""
    match = _NU_IN_NAME.search(name)
    return float(match.group(1)) if match else None
