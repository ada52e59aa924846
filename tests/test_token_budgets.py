"""Token budgets default per task kind; a run stored with an explicit budget of 64 still resumes."""

from __future__ import annotations

import json

import pytest

from codelutra.artifacts import atomic_write_text
from codelutra.config import (
    EvalConfig,
    PromptConfig,
    TaskSource,
    VerifyConfig,
    dump_config,
    load_config,
)
from codelutra.errors import UserError
from codelutra.loop.evaluate import evaluate_model
from codelutra.loop.refine import Refiner
from codelutra.tasks import Task
from codelutra.tasks.kinds import PYTHON, SQL, TaskSet
from codelutra.tasks.sources import load_tasks

PYTHON_TASK = Task(id="p", question="q", gold="def f():\n    return 1", kind="python", tests=("assert f() == 1",))


def test_budgets_default_per_kind_and_a_configured_one_wins():
    assert load_config().sampling.max_new_tokens is None and load_config().eval.max_new_tokens is None
    assert (SQL.max_new_tokens(None), PYTHON.max_new_tokens(None)) == (64, 512)
    assert SQL.max_new_tokens(100) == PYTHON.max_new_tokens(100) == 100


def test_eval_generates_with_the_kinds_budget(tmp_path, tiny_model_dir):
    tasks, _ = load_tasks(TaskSource(path="builtin:heldout", limit=1))
    out = tmp_path / "out"
    evaluate_model(tiny_model_dir, tasks, out, prompt=PromptConfig(), eval_cfg=EvalConfig(), verify=VerifyConfig(), label="t")
    assert json.loads((out / "eval_inputs.json").read_text())["settings"]["eval"]["max_new_tokens"] == 64
    [row] = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert row["truncated"] == [True]  # the tiny model never stops: it ran to the budget


def _refiner_over(tmp_path, tasks: list[Task], *overrides: str) -> Refiner:
    refiner = Refiner(load_config(None, [f"output_dir={tmp_path}", "name=old", *overrides]))
    refiner.train_tasks = refiner.eval_tasks = tasks
    return refiner


def test_a_run_stored_with_64_resumes_where_the_kinds_budget_is_64(tmp_path):
    sql_tasks, _ = load_tasks(TaskSource(path="builtin:heldout", limit=1))
    old = load_config(None, [f"output_dir={tmp_path}", "name=old", "sampling.max_new_tokens=64", "eval.max_new_tokens=64"])
    atomic_write_text(tmp_path / "runs" / "old" / "config.yaml", dump_config(old))  # as a run before the change wrote it
    _refiner_over(tmp_path, sql_tasks)._claim_run_dir()  # the same command today: resumes
    with pytest.raises(UserError, match="different configuration"):
        _refiner_over(tmp_path, TaskSet.of([PYTHON_TASK]))._claim_run_dir()  # 64 is not Python's budget (512)
    _refiner_over(tmp_path, TaskSet.of([PYTHON_TASK]), "sampling.max_new_tokens=64", "eval.max_new_tokens=64")._claim_run_dir()
