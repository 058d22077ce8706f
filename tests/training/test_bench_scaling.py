"""The bench's scaled presets: every training section shrinks, nested ones (diffusion.pderefiner) included."""

from __future__ import annotations

from pathlib import Path

import yaml

from training.bench.run import scaled_config

REPO = Path(__file__).resolve().parents[2]


def test_a_scaled_preset_shortens_every_training_section_nested_ones_too(tmp_path):
    preset = REPO / "configs" / "ks_bench.yaml"
    full = yaml.safe_load(preset.read_text())
    scaled = yaml.safe_load(scaled_config(preset, 0.01, tmp_path, seed=3).read_text())
    nested = full["diffusion"]["pderefiner"]
    assert nested["steps"] > 100  # the preset trains it for real: the scaling below is not a no-op
    assert scaled["diffusion"]["pderefiner"]["steps"] == max(1, int(nested["steps"] * 0.01))
    for section in ("autoencoder", "operator", "diffusion", "distill", "fno"):
        assert scaled[section]["steps"] == max(1, int(full[section]["steps"] * 0.01)), section
    assert scaled["seed"] == 3 and scaled["data"] == full["data"]  # same data and split for every seed
