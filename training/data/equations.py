"""Which PDE a data file holds, read from its attributes, so that evaluation can tell datasets apart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from training.config import EQUATION_BURGERS
from training.data.errors import DataFileError
from training.data.layout import ATTR_EQUATION, ATTR_EQUATION_PARAMS, ATTR_NU, nu_from_file_name


@dataclass(frozen=True)
class EquationInfo:
    """The equation's name (one of training.config.EQUATIONS) and its parameters as the file states them."""

    name: str
    params: dict = field(default_factory=dict)


def read_equation(path: str | Path) -> EquationInfo:
    """The file's `equation` attributes; a file without them (PDEBench's, or ours from before) is Burgers,
    with the ν its `nu` attribute or file name gives (params empty when neither does)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
    except OSError as exc:
        raise DataFileError(f"{path}: not a readable HDF5 file: {exc}") from exc
    if ATTR_EQUATION not in attrs:
        nu = float(attrs[ATTR_NU]) if ATTR_NU in attrs else nu_from_file_name(path.name)
        return EquationInfo(EQUATION_BURGERS, {} if nu is None else {"nu": nu})
    try:
        params = json.loads(attrs.get(ATTR_EQUATION_PARAMS, "{}"))
    except (TypeError, json.JSONDecodeError) as exc:
        raise DataFileError(f"{path}: attribute {ATTR_EQUATION_PARAMS!r} is not JSON: {exc}") from exc
    return EquationInfo(str(attrs[ATTR_EQUATION]), dict(params))
