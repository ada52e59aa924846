"""Every shipped config validates, and the Spider configs never evaluate on a database they train on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from codelutra.config import load_config

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
