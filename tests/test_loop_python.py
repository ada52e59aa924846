"""Python task sets through the loop: kinds, the judge stage, `codelutra run` and `codelutra eval` on a tiny model."""

from __future__ import annotations

import json

import pytest

from codelutra.candidates import sampled_candidates, verdict_row
from codelutra.cli import main
from codelutra.config import PromptConfig, TaskSource, VerifyConfig, load_config
from codelutra.errors import UserError
from codelutra.execution.verdict import VERDICT_KINDS
from codelutra.loop.refine import Refiner
from codelutra.loop.stages import judge_completions
from codelutra.tasks import Task
from codelutra.tasks.kinds import PYTHON, SQL, TaskSet
from codelutra.tasks.prompts import format_answer, format_python_answer, sql_messages
from codelutra.tasks.sources import load_tasks
from tests.python_fixtures import HUMANEVAL, MBPP_TRAIN, MBPP_VALIDATION, write_jsonl

pytestmark = pytest.mark.slow  # whole refinement loops on the tiny model


def test_answer_prefix_is_the_kinds_unless_configured():
    assert PromptConfig().answer_prefix is None
    assert SQL.answer_prefix(PromptConfig()) == "```sql\n"
    assert PYTHON.answer_prefix(PromptConfig()) == "```python\n"
    assert PYTHON.answer_prefix(PromptConfig(answer_prefix="")) == ""
    assert SQL.answer_prefix(PromptConfig(answer_prefix="```\n")) == "```\n"


def test_sql_kind_gives_the_sql_prompts_and_answers_unchanged():
    tasks, _ = load_tasks(TaskSource(path="builtin:heldout", limit=3))
    for style in ("compact", "create"):
        prompt = PromptConfig(schema_style=style)
        assert [SQL.messages(t, prompt) for t in tasks] == [sql_messages(t, style) for t in tasks]
    assert [SQL.answer(t.gold) for t in tasks] == [format_answer(t.gold) for t in tasks]


def test_a_task_set_has_one_kind():
    sql = Task("a", "q", "SELECT 1", "db", "db")
    python = Task("b", "q", "x = 1", kind="python", tests=("assert x == 1",))
    assert TaskSet.of([sql]).kind is SQL and TaskSet.of([python]).kind is PYTHON
    with pytest.raises(UserError, match="mixes kinds"):
        TaskSet.of([sql, python])


def test_judge_stage_extracts_and_runs_python_completions(tmp_path):
    tasks, _ = load_tasks(TaskSource(path=str(write_jsonl(tmp_path / "m.jsonl", MBPP_TRAIN[:2]))))
    samples = [
        {
            "id": "601",
            "completions": [
                "```python\ndef double(x):\n    return x + x\n```\nThat doubles it.",
                "```python\ndef double(x):\n    return x\n```",
                "I cannot do that.",
            ],
        },
        {"id": "602", "completions": ["```python\ndef square(x):\n    return x *\n```", "```python\nimport socket\nsocket.socket().connect(('1.1.1.1', 80))\n```"]},
    ]
    sampled = [sampled_candidates(row) for row in samples]
    judged = judge_completions(tasks, sampled, tmp_path / "verdicts.jsonl", verify=VerifyConfig(), description="judging")
    rows = [verdict_row(row["id"], candidates, "python") for row, candidates in zip(samples, judged)]
    assert [row["verdicts"] for row in rows] == [["correct", "wrong_result", "no_code"], ["syntax_error", "forbidden"]]
    assert rows[0]["python"] == ["def double(x):\n    return x + x", "def double(x):\n    return x", None]
    assert "assert double(1) == 2" in rows[0]["details"][1]
    assert [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()] == rows


def test_run_on_mbpp_with_a_tiny_model(tmp_path, tiny_model_dir):
    train = write_jsonl(tmp_path / "train.jsonl", MBPP_TRAIN)
    heldout = write_jsonl(tmp_path / "heldout.jsonl", MBPP_VALIDATION)
    cfg = load_config(
        None,
        [
            f"model.name={tiny_model_dir}",
            f"output_dir={tmp_path}",
            "name=mbpp",
            f"train_tasks={{path: {train}}}",
            f"eval_tasks={{path: {heldout}}}",
            "sampling.n=2",
            "sampling.max_new_tokens=12",
            "eval.max_new_tokens=12",
            "train.batch_size=2",
            "max_iterations=1",
        ],
    )
    refiner = Refiner(cfg)
    history = refiner.run()
    run_dir = tmp_path / "runs" / "mbpp"
    assert [h["iteration"] for h in history] == [0, 1]
    for k in (0, 1):
        result = json.loads((run_dir / f"iter_{k}" / "eval.json").read_text())
        assert result["n"] == 3 and set(result["counts"]) == set(VERDICT_KINDS)
    samples = [json.loads(line) for line in (run_dir / "iter_1" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(c.startswith("```python\n") for s in samples for c in s["completions"])
    pairs = [json.loads(line) for line in (run_dir / "iter_1" / "pairs.jsonl").read_text().splitlines()]
    by_id = {t.id: t for t in refiner.train_tasks}
    assert pairs and all(p["chosen_source"] == "gold" for p in pairs)
    for pair in pairs:
        task = by_id[pair["id"]]
        assert pair["chosen"] == format_python_answer(task.gold)
        assert pair["prompt"] == PYTHON.messages(task, cfg.prompt)
        assert "Your code should pass these tests:" in pair["prompt"][0]["content"]
    assert (run_dir / "iter_1" / "model" / "config.json").exists()


def test_eval_on_humaneval_layout(tmp_path, tiny_model_dir):
    tasks = write_jsonl(tmp_path / "humaneval.jsonl", HUMANEVAL)
    out = tmp_path / "out"
    assert main(["eval", "--model", tiny_model_dir, "--tasks", str(tasks), "--format", "humaneval", "--output", str(out),
                 "--set", "eval.max_new_tokens=8"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["n"] == 2 and sum(result["counts"].values()) == 2
    verdicts = [json.loads(line) for line in (out / "eval_verdicts.jsonl").read_text().splitlines()]
    assert [v["id"] for v in verdicts] == ["Fixture/0", "Fixture/1"] and all("python" in v for v in verdicts)
