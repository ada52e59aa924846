"""Every shipped config validates, and the Spider configs never evaluate on a database they train on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from codelutra.config import dump_config, load_config
from codelutra.errors import UserError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates(path):
    cfg = load_config(path)
    assert cfg.name == path.stem


@pytest.mark.parametrize("name", ["spider", "spider-gpu"])
def test_spider_configs_hold_out_the_databases_they_evaluate_on(name):
    path = next(p for p in CONFIGS if p.stem == name)
    cfg = load_config(path)
    assert cfg.eval_tasks.databases and set(cfg.eval_tasks.databases) == set(cfg.train_tasks.exclude_databases)
    assert yaml.safe_load(path.read_text())["eval_tasks"]["databases"] == cfg.eval_tasks.databases


def test_a_stored_config_naming_float32_still_loads_and_another_dtype_is_refused(tmp_path):
    """Runs stored `model.dtype: float32` in config.yaml; it must keep loading (the run resumes) as the same config."""
    stored = yaml.safe_load(dump_config(load_config()))
    stored["model"]["dtype"] = "float32"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(stored))
    assert load_config(path) == load_config()
    with pytest.raises(UserError, match="float32 only"):
        load_config(None, ["model.dtype=bfloat16"])


@pytest.mark.parametrize("setting", ["train.anchor=50", "train.preference_on=own", "train.preference_on=errors"])
def test_settings_of_the_packed_trainer_are_refused_without_packing(setting):
    """TRL's own batches (packing false) compute TRL's loss only: a setting it cannot honour is refused, not ignored."""
    with pytest.raises(UserError, match="packed trainer only"):
        load_config(None, ["train.anchor=0", setting, "train.packing=false"])
    assert load_config(None, ["train.anchor=0", "train.packing=false"]).train.preference_on == "all"
