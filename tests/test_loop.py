"""The refinement loop end to end on a tiny random model: artifacts, reference chain, resume, errors."""

from __future__ import annotations

import json

import pytest

import codelutra.training.trainer as trainer_module
from codelutra.config import load_config
from codelutra.errors import UserError
from codelutra.execution.verdict import VERDICT_KINDS
from codelutra.loop.refine import Refiner
from codelutra.tasks.prompts import format_answer

pytestmark = pytest.mark.slow  # whole refinement loops on the tiny model


def _config(tmp_path, model_dir, *extra):
    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"output_dir={tmp_path}",
            "name=tiny",
            "train_tasks.limit=6",
            "eval_tasks.limit=4",
            "sampling.n=2",
            "sampling.max_new_tokens=12",
            "eval.max_new_tokens=12",
            "train.epochs=1",
            "train.batch_size=2",
            "max_iterations=2",
            *extra,
        ],
    )


def _mtimes(run_dir):
    return {p.relative_to(run_dir): p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}


@pytest.fixture
def recorded_training(monkeypatch):
    """Record which policy each iteration trains from, and its reference, while training for real."""
    calls = []
    real = trainer_module.train_policy

    def record(policy_path, pairs, out_dir, cfg, **kw):
        calls.append((policy_path, str(out_dir), kw.get("reference_path"), kw.get("adapter")))
        return real(policy_path, pairs, out_dir, cfg, **kw)

    monkeypatch.setattr(trainer_module, "train_policy", record)
    return calls


def test_run_writes_every_artifact_and_chains_references(tmp_path, tiny_model_dir, recorded_training):
    cfg = _config(tmp_path, tiny_model_dir)
    refiner = Refiner(cfg)
    history = refiner.run()
    run_dir = tmp_path / "runs" / "tiny"

    assert [h["iteration"] for h in history] == [0, 1, 2]
    for k in range(3):
        result = json.loads((run_dir / f"iter_{k}" / "eval.json").read_text())
        assert result["n"] == 4
        assert set(result["counts"]) == set(VERDICT_KINDS)
        assert sum(result["counts"].values()) == 4
        assert result["accuracy"] == result["counts"]["correct"] / 4
    for k in (1, 2):
        it = run_dir / f"iter_{k}"
        samples = [json.loads(line) for line in (it / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 6 and all(len(s["completions"]) == 2 for s in samples)
        verdicts = [json.loads(line) for line in (it / "verdicts.jsonl").read_text().splitlines()]
        assert all(v in VERDICT_KINDS for row in verdicts for v in row["verdicts"])
        pairs = [json.loads(line) for line in (it / "pairs.jsonl").read_text().splitlines()]
        assert pairs, "a random model gets nothing right, so every problem yields a gold-vs-sample pair"
        gold_answers = {format_answer(t.gold) for t in refiner.train_tasks}
        assert all(p["chosen_source"] == "gold" and p["chosen"] in gold_answers for p in pairs)
        assert (it / "model" / "config.json").exists() and (it / "adapter").is_dir()
        assert not (it / "checkpoints").exists()
    assert (run_dir / "config.yaml").exists() and (run_dir / "report.md").exists()
    assert (run_dir / "accuracy.png").stat().st_size > 1000
    assert "| base model |" in (run_dir / "report.md").read_text()

    # Iteration 1 trains from (and is referenced to) the base model, iteration 2 from iteration 1's policy.
    iter_1_model = str(run_dir / "iter_1" / "model")
    assert recorded_training == [
        (tiny_model_dir, str(run_dir / "iter_1"), tiny_model_dir, None),
        (iter_1_model, str(run_dir / "iter_2"), iter_1_model, None),
    ]


def test_eval_base_false_leaves_the_base_model_unevaluated(tmp_path, tiny_model_dir):
    """eval.base: false: no iteration-0 evaluation; the history, report and timings start at iteration 1."""
    history = Refiner(_config(tmp_path, tiny_model_dir, "eval.base=false", "min_gain=0.5")).run()
    run_dir = tmp_path / "runs" / "tiny"
    assert [h["iteration"] for h in history] == [1, 2], "min_gain has nothing to compare iteration 1 with"
    assert not (run_dir / "iter_0" / "eval.json").exists()
    report = (run_dir / "report.md").read_text()
    assert "| base model |" not in report and "| iteration 1 |" in report
    assert "base model was not evaluated" in report
    assert "| 1 |" in report and "| 2 |" in report  # both iterations' timings


def test_the_base_model_as_reference_and_a_continued_adapter_reach_the_trainer(tmp_path, tiny_model_dir, recorded_training):
    """train.reference: base and train.lora_adapter: continued (their effect on the loss: tests/test_training.py)."""
    Refiner(_config(tmp_path, tiny_model_dir, "train.reference=base", "train.lora_adapter=continued")).run()
    run_dir = tmp_path / "runs" / "tiny"
    iter_1_model, iter_1_adapter = str(run_dir / "iter_1" / "model"), str(run_dir / "iter_1" / "adapter")
    assert recorded_training == [
        (tiny_model_dir, str(run_dir / "iter_1"), tiny_model_dir, None),
        (iter_1_model, str(run_dir / "iter_2"), tiny_model_dir, (tiny_model_dir, iter_1_adapter)),
    ]


def test_rerun_after_a_crash_resumes_without_redoing_finished_stages(tmp_path, tiny_model_dir, monkeypatch):
    cfg = _config(tmp_path, tiny_model_dir)
    real = trainer_module.train_policy

    def crash_in_iteration_2(policy_path, pairs, out_dir, cfg, **kw):
        if str(out_dir).endswith("iter_2"):
            raise KeyboardInterrupt
        return real(policy_path, pairs, out_dir, cfg, **kw)

    monkeypatch.setattr(trainer_module, "train_policy", crash_in_iteration_2)
    with pytest.raises(KeyboardInterrupt):
        Refiner(cfg).run()
    run_dir = tmp_path / "runs" / "tiny"
    before = _mtimes(run_dir)
    assert (run_dir / "iter_2" / "pairs.jsonl").exists() and not (run_dir / "iter_2" / "model").exists()

    monkeypatch.setattr(trainer_module, "train_policy", real)
    history = Refiner(cfg).run()
    assert len(history) == 3
    after = _mtimes(run_dir)
    rewritten = {"report.md", "timings.json"}  # the crashed stage's seconds are added to on resuming
    unchanged = [p for p in before if p.name not in rewritten and before[p] == after.get(p)]
    assert sorted(unchanged) == sorted(p for p in before if p.name not in rewritten), "finished stages were redone"
    assert (run_dir / "iter_2" / "model" / "config.json").exists()
    timings = json.loads((run_dir / "iter_2" / "timings.json").read_text())
    assert set(timings) == {"sample", "verify", "pair", "train", "eval"}
    assert json.loads((run_dir / "iter_1" / "timings.json").read_text()).keys() == timings.keys()
    assert "Seconds per stage" in (run_dir / "report.md").read_text()


def test_resume_reads_an_older_config_with_a_setting_missing(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, "max_iterations=1")
    Refiner(cfg).run()
    stored = tmp_path / "runs" / "tiny" / "config.yaml"
    text = stored.read_text()
    assert "  max_steps: null\n" in text
    stored.write_text(text.replace("  max_steps: null\n", ""))  # as written before train.max_steps existed
    assert len(Refiner(cfg).run()) == 2


def test_resume_refuses_a_changed_config(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, "max_iterations=1")
    Refiner(cfg).run()
    changed = _config(tmp_path, tiny_model_dir, "max_iterations=1", "train.beta=0.5")
    with pytest.raises(UserError, match="different configuration"):
        Refiner(changed).run()


def test_generation_resumes_from_partial_file(tmp_path, tiny_model_dir, monkeypatch):
    from codelutra.config import PromptConfig, TaskSource
    from codelutra.generation import sampler
    from codelutra.generation.types import SamplingParams
    from codelutra.loop.stages import generate_completions
    from codelutra.tasks.sources import load_tasks

    tasks, _ = load_tasks(TaskSource(path="builtin:heldout", limit=3))
    out = tmp_path / "samples.jsonl"
    partial = tmp_path / "samples.jsonl.partial"
    partial.write_text(json.dumps({"id": tasks[0].id, "completions": ["kept"]}) + '\n{"id": "cut sho')
    asked = []
    real = sampler.generate

    def spy(model, tokenizer, prompts, **kw):
        asked.append(len(prompts))
        return real(model, tokenizer, prompts, **kw)

    monkeypatch.setattr(sampler, "generate", spy)
    kwargs = dict(prompt=PromptConfig(), params=SamplingParams(max_new_tokens=4, batch_size=4), description="t")
    rows = generate_completions(tiny_model_dir, tasks, out, **kwargs)
    assert asked == [2]
    assert [group[0].problem_id for group in rows] == [t.id for t in tasks]
    assert [c.text for c in rows[0]] == ["kept"]
    assert out.exists() and not partial.exists()


def test_a_finished_run_is_extended_by_more_iterations(tmp_path, tiny_model_dir):
    Refiner(_config(tmp_path, tiny_model_dir, "max_iterations=1")).run()
    run_dir = tmp_path / "runs" / "tiny"
    before = _mtimes(run_dir)

    history = Refiner(_config(tmp_path, tiny_model_dir, "max_iterations=2")).run()
    assert [h["iteration"] for h in history] == [0, 1, 2]
    after = _mtimes(run_dir)
    redone = [p for p in before if p.parts[0].startswith("iter_") and after[p] != before[p]]
    assert redone == [], "the finished iterations were redone"
    assert load_config(run_dir / "config.yaml").max_iterations == 2
    report = (run_dir / "report.md").read_text()
    assert all(f"| {label} |" in report for label in ("base model", "iteration 1", "iteration 2"))


def test_a_run_stopped_by_min_gain_goes_on_when_min_gain_is_lowered(tmp_path, tiny_model_dir):
    assert len(Refiner(_config(tmp_path, tiny_model_dir, "min_gain=1.0")).run()) == 2  # no iteration gains 100 points
    run_dir = tmp_path / "runs" / "tiny"
    assert not (run_dir / "iter_2").exists()

    assert len(Refiner(_config(tmp_path, tiny_model_dir, "min_gain=-1.0")).run()) == 3
    assert load_config(run_dir / "config.yaml").min_gain == -1.0


def _eval_inputs(run_dir):
    return {k: json.loads((run_dir / f"iter_{k}" / "eval_inputs.json").read_text()) for k in (0, 1)}


def test_a_moved_run_resumes_without_redoing_anything(tmp_path, tiny_model_dir):
    first, second = tmp_path / "first", tmp_path / "second"
    Refiner(_config(first, tiny_model_dir, "max_iterations=1")).run()
    assert all(str(first) not in json.dumps(inputs) for inputs in _eval_inputs(first / "runs" / "tiny").values())
    (second / "runs").mkdir(parents=True)
    (first / "runs" / "tiny").rename(second / "runs" / "tiny")
    run_dir = second / "runs" / "tiny"
    before = _mtimes(run_dir)

    history = Refiner(_config(second, tiny_model_dir, "max_iterations=1")).run()
    assert len(history) == 2
    after = _mtimes(run_dir)
    assert [p for p in before if p.parts[0].startswith("iter_") and after[p] != before[p]] == []
    assert load_config(run_dir / "config.yaml").output_dir == str(second)


def test_a_run_recorded_with_absolute_paths_resumes_in_place(tmp_path, tiny_model_dir, monkeypatch):
    """eval_inputs.json as versions before 2 wrote it (no version, absolute paths) is accepted, then made movable."""
    from codelutra.loop import evaluate

    run_dir = tmp_path / "runs" / "tiny"
    as_v1 = evaluate._inputs_v1

    def old_inputs(model, *rest):  # the model's path as the older version was given it: absolute
        return as_v1(str(run_dir / model) if model.startswith("iter_") else model, *rest)

    monkeypatch.setattr(evaluate, "_inputs", old_inputs)
    Refiner(_config(tmp_path, tiny_model_dir, "max_iterations=1")).run()
    old = _eval_inputs(run_dir)
    assert "version" not in old[1] and old[1]["model"] == str(run_dir / "iter_1" / "model")
    monkeypatch.undo()
    before = _mtimes(run_dir)

    assert len(Refiner(_config(tmp_path, tiny_model_dir, "max_iterations=1")).run()) == 2
    after = _mtimes(run_dir)
    assert [p for p in before if p.suffix != ".json" and p.parts[0].startswith("iter_") and after[p] != before[p]] == []
    assert all(after[p] == before[p] for p in before if p.name in ("eval.json", "timings.json")), "an evaluation was redone"
    now = _eval_inputs(run_dir)
    assert now[1]["version"] == 2 and now[1]["model"] == "iter_1/model" and now[0]["model"] == tiny_model_dir


def test_a_run_lists_its_skipped_problems_in_its_folder(tmp_path, tiny_model_dir, capsys):
    import sqlite3

    db = sqlite3.connect(tmp_path / "shop.sqlite")
    db.execute("CREATE TABLE item (item_id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO item VALUES (?, ?)", [(1, "pen"), (2, "book")])
    db.commit()
    db.close()
    rows = [{"id": f"q{i}", "question": "N?", "gold_sql": "SELECT count(*) FROM item", "db_path": "shop.sqlite"} for i in (0, 1)]
    rows += [{"id": f"g{i}", "question": f"Gone {i}?", "gold_sql": "SELECT 1", "db_path": "gone.sqlite"} for i in (0, 1, 2)]
    tasks = tmp_path / "eval.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))

    Refiner(_config(tmp_path, tiny_model_dir, "max_iterations=1", f"eval_tasks.path={tasks}")).run()
    run_dir = tmp_path / "runs" / "tiny"
    printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("skipped", "eval_tasks"))]
    assert printed == [
        f"skipped 3 problems of {tasks}: database not found: {tmp_path / 'gone.sqlite'}",
        f"eval_tasks: 2 problems (3 skipped, each listed in {run_dir / 'skipped_eval_tasks.jsonl'})",
    ]
    listed = [json.loads(line) for line in (run_dir / "skipped_eval_tasks.jsonl").read_text().splitlines()]
    assert [row["id"] for row in listed] == ["g0", "g1", "g2"]
    assert not (run_dir / "skipped_train_tasks.jsonl").exists()
