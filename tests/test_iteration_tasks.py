"""Which training problems an iteration samples: all of them, or fresh / failed-first slices of the pool."""

from __future__ import annotations

from codelutra.artifacts import write_jsonl
from codelutra.config import load_config
from codelutra.loop.refine import Refiner
from codelutra.tasks import Task
from codelutra.tasks.kinds import TaskSet


def _refiner(tmp_path, *sets) -> Refiner:
    refiner = Refiner(load_config(overrides=[f"output_dir={tmp_path}", *sets]))
    refiner.train_tasks = TaskSet.of(Task(id=f"p{i}", question="q", gold="SELECT 1", db_path="", db_id="d") for i in range(10))
    return refiner


def test_every_problem_every_iteration_by_default(tmp_path):
    refiner = _refiner(tmp_path)
    assert refiner._iteration_tasks(1) == refiner._iteration_tasks(3) == refiner.train_tasks


def test_fresh_slices_cover_the_pool_before_repeating(tmp_path):
    refiner = _refiner(tmp_path, "train_tasks.per_iteration=4")
    ids = [[t.id for t in refiner._iteration_tasks(k)] for k in (1, 2, 3)]
    assert all(len(i) == 4 for i in ids)
    assert len(set(ids[0] + ids[1])) == 8  # no problem twice in the first two iterations
    assert len(set(ids[0] + ids[1] + ids[2])) == 10  # the third wraps round the pool
    assert ids == [[t.id for t in _refiner(tmp_path, "train_tasks.per_iteration=4")._iteration_tasks(k)] for k in (1, 2, 3)]


def test_failed_first_revisits_what_the_last_iteration_got_wrong(tmp_path):
    refiner = _refiner(tmp_path, "train_tasks.per_iteration=4", "train_tasks.per_iteration_order=failed_first")
    first = [t.id for t in refiner._iteration_tasks(1)]
    rows = [{"id": i, "verdicts": ["correct" if n < 2 else "wrong_result", "syntax_error"]} for n, i in enumerate(first)]
    write_jsonl(refiner.run_dir / "iter_1" / "verdicts.jsonl", rows)
    second = [t.id for t in refiner._iteration_tasks(2)]
    assert second[:2] == first[2:]  # the two without a correct sample, in the pool's order
    assert len(second) == 4 and len(set(second)) == 4 and not set(second[2:]) & set(first)
