"""An answer cut at the token budget is judged `truncated` (unless its code is correct all the same)."""

from __future__ import annotations

import json

from codelutra.candidates import Candidate, pair_row, sampled_candidates, verdict_row
from codelutra.cli import main
from codelutra.config import PairConfig, TaskSource, VerifyConfig
from codelutra.loop.stages import judge_completions
from codelutra.tasks import Task
from codelutra.tasks.kinds import TaskSet
from codelutra.tasks.prompts import format_answer, format_python_answer
from codelutra.tasks.sources import load_tasks
from codelutra.training.pairs import build_pairs


def _judge(tmp_path, tasks, rows):
    """samples.jsonl `rows` judged, as verdicts.jsonl rows."""
    judged = judge_completions(
        TaskSet.of(tasks), [sampled_candidates(row) for row in rows], tmp_path / "verdicts.jsonl", verify=VerifyConfig(), description="t"
    )
    return [verdict_row(row["id"], candidates, TaskSet.of(tasks).kind.name) for row, candidates in zip(rows, judged)]


def test_sql_cut_answers(tmp_path):
    [task], _ = load_tasks(TaskSource(path="builtin:heldout", limit=1))
    gold, cut = format_answer(task.gold), "```sql\nSELECT name FROM item WHERE"
    rows = [
        {"id": task.id, "completions": [gold, cut, cut], "truncated": [True, True, False]},
    ]
    [row] = _judge(tmp_path, [task], rows)
    assert row["verdicts"] == ["correct", "truncated", "syntax_error"]
    assert "token budget" in row["details"][1] and "syntax_error" in row["details"][1]


def test_samples_written_before_the_truncated_list_read_as_not_cut(tmp_path):
    [task], _ = load_tasks(TaskSource(path="builtin:heldout", limit=1))
    [row] = _judge(tmp_path, [task], [{"id": task.id, "completions": ["```sql\nSELECT name FROM item WHERE"]}])
    assert row["verdicts"] == ["syntax_error"]


def test_python_cut_answers(tmp_path):
    task = Task(id="p", question="one", gold="def f():\n    return 1", kind="python", tests=("assert f() == 1",))
    whole = format_python_answer(task.gold)
    rows = [{"id": "p", "completions": [whole, "```python\ndef f():\n    return", "```python\ndef f():\n    return 2\n```"],
             "truncated": [True, True, True]}]
    [row] = _judge(tmp_path, [task], rows)
    assert row["verdicts"] == ["correct", "truncated", "truncated"]
    assert "wrong_result" in row["details"][2]


def test_a_truncated_answer_is_a_rejected_side_of_a_pair():
    candidates = [Candidate("good", problem_id="p", verdict="correct"), Candidate("cut", truncated=True, problem_id="p", verdict="truncated")]
    [pair] = [pair_row(p) for p in build_pairs([{"role": "user", "content": "q"}], candidates, "gold", cfg=PairConfig())]
    assert (pair["chosen"], pair["rejected"], pair["rejected_kind"]) == ("good", "cut", "truncated")


def test_eval_with_the_tiny_model_counts_every_answer_truncated(tmp_path, tiny_model_dir):
    """The tiny random model never closes its code block, so every answer runs to the budget."""
    out = tmp_path / "out"
    argv = ["eval", "--model", tiny_model_dir, "--tasks", "builtin:heldout", "--limit", "3", "--output", str(out),
            "--set", "eval.max_new_tokens=8"]
    assert main(argv) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["counts"]["truncated"] == 3 and result["counts"]["syntax_error"] == 0
    samples = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert all(row["truncated"] == [True] for row in samples)
    verdicts = [json.loads(line) for line in (out / "eval_verdicts.jsonl").read_text().splitlines()]
    assert all(row["verdicts"] == ["truncated"] for row in verdicts)
