"""A run's effective config: the named config with a sweep entry's dotted overrides applied and validated.

Written next to the code (`.vastkit/run-config.yaml`) so that the data role and the pipeline read one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from training.config import ConfigError, apply_overrides, config_from_dict, load_config
from training.run.paths import atomic_write_bytes

RUN_CONFIG = ".vastkit/run-config.yaml"


def write_run_config(base: Path, overrides: dict[str, Any], out: Path) -> bool:
    """Write the merged config to `out`; False when `out` already held exactly that."""
    tree = apply_overrides(load_config(base).to_dict(), overrides)
    try:
        config_from_dict(tree)
    except ConfigError as exc:
        raise ConfigError(f"{base} with overrides {overrides}: {exc}") from None
    text = f"# {base} with overrides {overrides} (written by instance_agent write-config)\n"
    data = (text + yaml.safe_dump(tree, sort_keys=False)).encode()
    if out.is_file() and out.read_bytes() == data:
        return False
    atomic_write_bytes(out, data)
    return True
