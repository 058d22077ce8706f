"""The stage registry agrees with the instance contract, with itself, and with what the pipeline checks."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

import run_contract
from training.config import Config, TrainLoopConfig
from training.stages import registry
from training.store.checkpoint import config_differences

KINDS = [name for name, stage in registry.REGISTRY.items() if stage.final_checkpoint] + [
    model.name for model in registry.SIDE_MODELS]


def _changed(value):
    if isinstance(value, dict):
        return {key: _changed(inner) for key, inner in value.items()}
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "_changed"
    if isinstance(value, list):
        return [*value, "extra"]
    return 1  # None


def test_the_registry_lists_the_contracts_stages_in_the_contracts_order():
    assert tuple(registry.REGISTRY) == run_contract.STAGES
    assert all(stage.name == name for name, stage in registry.REGISTRY.items())


def test_every_upstream_runs_earlier_and_leaves_a_final_checkpoint_to_compare():
    order = list(run_contract.STAGES)
    for name, stage in registry.REGISTRY.items():
        for earlier in stage.upstream:
            assert order.index(earlier) < order.index(name), (name, earlier)
            assert registry.get(earlier).final_checkpoint, (name, earlier)


def test_a_stage_checks_its_own_section_and_every_section_its_upstream_and_side_models_check():
    for name, stage in registry.REGISTRY.items():
        if not stage.final_checkpoint:
            continue
        assert name in stage.sections, name
        inputs = [*stage.upstream, *(model.name for model in registry.SIDE_MODELS if model.stage == name)]
        for earlier in inputs:
            assert set(registry.sections_of(earlier)) <= set(stage.sections), (name, earlier)


def test_a_trained_stages_seed_may_change_on_resume():
    assert all("seed" not in registry.sections_of(name) for name in registry.TRAINED_STAGES)


@pytest.mark.parametrize("kind", KINDS)
def test_a_checkpoint_is_refused_exactly_when_one_of_its_kinds_sections_changed(kind):
    base = Config().to_dict()
    assert set(registry.sections_of(kind)) <= set(base), registry.sections_of(kind)
    for section in base:
        differences = config_differences(base, {**base, section: _changed(base[section])}, kind)
        assert bool(differences) == (section in registry.sections_of(kind)), (kind, section, differences)


def test_the_loop_sections_are_the_configs_training_loop_sections():
    config = Config()
    loops = [f.name for f in dataclasses.fields(Config) if isinstance(getattr(config, f.name), TrainLoopConfig)]
    assert list(registry.LOOP_SECTIONS) == loops
    assert set(registry.TRAINED_STAGES) <= set(loops)


def test_every_stage_names_a_runnable_module():
    for name in registry.REGISTRY:
        assert callable(registry.module_of(name).run), name


def test_an_unknown_name_lists_the_valid_stages():
    with pytest.raises(ValueError, match="valid stages: autoencoder, cache"):
        registry.upstream_of("fno")  # a side model, not a stage


def test_the_registry_imports_without_torch():
    probe = "import sys, training.stages.registry; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", probe], check=True)
