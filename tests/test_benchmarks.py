"""The benchmark scripts end to end in their quick mode, on the tiny random model and a handful of problems.

They run as a person runs them (a subprocess from the repository root), because speed.py starts
each stage in a fresh process that imports the script. Sizes are shrunk to the minimum with the
scripts' own options; the numbers mean nothing here, the files and their fields are what is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_dataset

pytestmark = pytest.mark.slow  # each runs a benchmark end to end on the tiny model

REPO = Path(__file__).resolve().parents[1]
PROVENANCE = {"command", "commit", "machine", "versions"}


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_quality_quick_runs_three_arms_per_seed_from_one_base_evaluation(tmp_path, tiny_model_dir):
    results = tmp_path / "results"
    stdout = _run(
        "quality.py", "--tasks", "builtin", "--iterations", "2", "--seeds", "0,1", "--model", tiny_model_dir,
        "--output", str(tmp_path), "--results", str(results),
        "--set", "train_tasks.limit=2", "--set", "eval_tasks.limit=2", "--set", "sampling.max_new_tokens=8",
        "--set", "eval.max_new_tokens=8", "--set", "train.max_steps=1", "--arm", "own:train.preference_on=own",
    )

    assert "Quality: builtin (quick)" in stdout
    assert (results / "quality-builtin-quick.md").exists() and (results / "quality-builtin-quick.png").exists()
    result = json.loads((results / "quality-builtin-quick.json").read_text())
    assert PROVENANCE <= set(result) and set(result["versions"]) >= {"torch", "transformers", "trl", "peft"}
    settings = result["settings"]
    assert settings["train_steps_per_iteration"] == 1 and settings["samples_per_problem"] == 2 and settings["seeds"] == [0, 1]
    assert result["base"]["n"] == 2 and "heldout_pass@1_greedy" in result["base"]
    assert list(result["arms"]) == ["codelutra", "sft", "dpo", "own"] and set(result["per_seed"]) == {"0", "1"}
    assert list(result["paired"]) == ["codelutra_minus_sft", "own_minus_sft", "codelutra_minus_dpo"]
    assert "preference_on: own" in (tmp_path / "runs" / "quality-builtin-own-seed0-quick" / "config.yaml").read_text()
    for arm, history in result["arms"].items():
        assert [row["iteration"] for row in history] == [1, 2]
        for row in history:  # one value per seed, in seed order, and the spread of the accuracies
            per_seed = [result["per_seed"][seed][arm][row["iteration"] - 1] for seed in ("0", "1")]
            assert row["accuracies"] == [r["accuracy"] for r in per_seed] and row["n"] == 2
            assert row["min"] <= row["mean"] <= row["max"] and row["mean"] == sum(row["accuracies"]) / 2
            assert row["train_pass@1"] == [r["train_pass@1"] for r in per_seed] and len(row["train_pass@n"]) == 2
        assert history[0]["pairs"] == [2, 2]  # a random model gets nothing right: one gold-vs-sample pair per problem
    # One base evaluation for every arm and seed; one set of iteration-1 pairs per seed, shared by its arms.
    runs = {(arm, seed): tmp_path / "runs" / f"quality-builtin-{arm}-seed{seed}-quick" for arm in result["arms"] for seed in (0, 1)}
    assert len({(run / "iter_0/eval.json").read_text() for run in runs.values()}) == 1
    for seed in (0, 1):
        assert len({(runs[arm, seed] / "iter_1/pairs.jsonl").read_text() for arm in result["arms"]}) == 1
    markdown = (results / "quality-builtin-quick.md").read_text()
    assert "Seeds: 0, 1." in markdown and "| codelutra | 2 |" in markdown
    # The comparison that decides: per iteration, codelutra - sft over every (seed, problem), with its interval.
    for k, row in enumerate(result["paired"]["codelutra_minus_sft"], 1):
        per_problem = [
            (result["per_seed"][seed]["codelutra"][k - 1]["verdicts"][pid] == "correct")
            - (result["per_seed"][seed]["sft"][k - 1]["verdicts"][pid] == "correct")
            for seed in ("0", "1") for pid in result["per_seed"][seed]["sft"][k - 1]["verdicts"]
        ]  # fmt: skip
        assert row["iteration"] == k and row["n"] == 4 and row["mean"] == sum(per_problem) / 4
        assert row["ci95"][0] <= row["mean"] <= row["ci95"][1]
    assert [r["iteration"] for r in result["paired"]["codelutra_minus_dpo"]] == [1, 2]
    first = result["per_seed"]["0"]["codelutra"][0]
    assert first["rejected_kinds"] and sum(first["rejected_kinds"].values()) == first["pairs"]
    assert set(first["dpo_term"]) >= {"logps/chosen", "logps/rejected"} and len(first["dpo_term"]["logps/chosen"]) == 2
    assert "Paired, codelutra - sft" in markdown


def test_speed_quick_measures_every_stage(tmp_path, tiny_model_dir):
    results = tmp_path / "results"
    stdout = _run(
        "speed.py", "--model", tiny_model_dir, "--output", str(tmp_path), "--results", str(results),
        "--problems", "2", "--batch-sizes", "4", "--iteration-sizes", "2x1", "--eval-problems", "1",
    )

    assert "Speed (quick)" in stdout
    assert (results / "speed-quick.md").exists()
    result = json.loads((results / "speed-quick.json").read_text())
    assert PROVENANCE <= set(result)
    sections = result["sections"]
    assert [r["variant"] for r in sections["sampling"]] == ["batch 4 sequences"]
    constrained = sections["constrained_sampling"]
    assert [(r["variant"].split(",")[0], r["n"]) for r in constrained] == [
        ("unconstrained", 1), ("schema grammar", 1), ("unconstrained", 8), ("schema grammar", 8),
    ]  # fmt: skip
    assert "building the grammars" in constrained[1]["note"] and constrained[0]["ratio"] == 1
    assert len(sections["verification"]) == 4 and len(sections["training"]) == 3 and len(sections["iteration"]) == 1
    assert sections["verification"][0]["work"] == 2 * 4  # problems x the quick mode's 4 samples each
    for pool in sections["verification"][2:]:  # the batch judges each candidate as the one-at-a-time loop does
        assert "same verdicts as the serial loop on 8/8" in pool["note"]
    for rows in sections.values():
        assert rows[0]["ratio"] == 1.0
        for row in rows:
            assert row["seconds"] > 0 and row["rate"] > 0 and row["peak_rss_mb"] > 0
            assert row["peak_rss_with_workers_mb"] >= row["peak_rss_mb"]
    variants = [row["variant"].split(",")[0] for row in sections["shared_sampling"]]
    assert variants == ["plain generate", "plain generate", "shared-prefix sampler"] * 2  # n = 1, then n = 8
    plain, onednn, shared = (sections["shared_sampling"][i::3] for i in range(3))
    assert all("its prefill alone" in row["note"] for row in plain) and not any("prefill alone" in row["note"] for row in onednn)
    assert all("oneDNN linear layers" in row["variant"] for row in onednn)
    assert all("x plain generate with oneDNN layers" in row["note"] for row in shared)


def test_speed_trains_on_spider_prompts_one_database_after_another(tmp_path, tiny_model_dir):
    shared_dataset("spider")
    results = tmp_path / "results"
    stdout = _run(
        "speed.py", "--tasks", "spider", "--stages", "training", "--model", tiny_model_dir, "--output", str(tmp_path),
        "--results", str(results), "--problems", "3", "--batch-sizes", "4",
    )

    assert "ratio training_vs_trl" in stdout
    result = json.loads((results / "speed-quick-spider.json").read_text())
    assert result["sizes"]["tasks"] == "spider" and len(result["sections"]["training"]) == 3
    assert result["sections"]["training"][0]["work"] == 3  # a random model gets nothing right: one pair per problem


def test_speed_measures_verification_alone_on_given_samples(tmp_path, tiny_model_dir):
    from codelutra.config import TaskSource
    from codelutra.tasks.sources import load_tasks

    tasks, _ = load_tasks(TaskSource(path="builtin:train", limit=3))
    # per problem: its gold answer (correct), a query on a missing table (an error), and the gold again
    rows = [{"id": t.id, "completions": [f"```sql\n{t.gold}\n```", "```sql\nSELECT x FROM nowhere\n```", f"```sql\n{t.gold}\n```"]} for t in tasks]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(row) + "\n" for row in rows))
    results = tmp_path / "results"
    _run(
        "speed.py", "--model", tiny_model_dir, "--output", str(tmp_path), "--results", str(results),
        "--samples", str(samples), "--problems", "3", "--stages", "verification", "--tag", "v",
    )

    sections = json.loads((results / "speed-quick-v.json").read_text())["sections"]
    assert list(sections) == ["verification"]
    variants = [row["variant"] for row in sections["verification"]]
    assert variants == ["serial loop, a sandbox per candidate", "in-process sqlite3 loop, no sandbox", "verify_sql, 1 worker", "verify_sql, a worker per core"]
    for pool in sections["verification"][2:]:
        assert "same verdicts as the serial loop on 9/9" in pool["note"]


def test_default_run_compares_two_commits(tmp_path, tiny_model_dir):
    results = tmp_path / "results"
    tiny = ["--set", f"model.name={tiny_model_dir}", "--set", "train_tasks.limit=2", "--set", "eval_tasks.limit=2",
            "--set", "sampling.max_new_tokens=8", "--set", "eval.max_new_tokens=8", "--set", "train.max_steps=1",
            "--set", "max_iterations=1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "default_run.py"), "--before", "HEAD", "--after", "HEAD",
         "--scratch", str(tmp_path / "scratch"), "--results", str(results), "--tag", "test", *tiny],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((results / "default-run-test.json").read_text())
    assert PROVENANCE <= set(result) and set(result["runs"]) == {"before", "after"}
    for run in result["runs"].values():
        assert run["exit_code"] == 0 and run["wall_seconds"] > 0 and run["peak_rss_tree_mb"] > 100
        assert [it["iteration"] for it in run["iterations"]] == [0, 1]
    assert not (tmp_path / "scratch" / "before").exists(), "the checkouts are removed after the runs"


def test_decode_step_times_each_part_and_checks_the_logits_agree(tmp_path, tiny_model_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    args = ["--model", tiny_model_dir, "--rows", "3", "--context", "8", "--repeats", "2", "--results", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "decode_step.py"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "decode-step.json").read_text())
    assert PROVENANCE <= result.keys() and result["model"] == tiny_model_dir
    assert [part["part"] for part in result["parts"]] == ["next-token choice", "forward step", "forward step's linear layers"]
    assert all(part["plain_ms"] > 0 and part["project_ms"] > 0 for part in result["parts"])


def test_quality_refuses_an_unknown_arm_in_one_line():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--arms", "codelutra,ppo"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "--arms: 'ppo' is none of codelutra, sft, dpo and no --arm defines it" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_fixed_pairs_trains_one_iterations_pairs_once_per_arm_and_pairs_the_verdicts(tmp_path, tiny_model_dir):
    from codelutra.config import load_config
    from codelutra.loop.refine import Refiner

    sizes = ["train_tasks.limit=3", "eval_tasks.limit=3", "sampling.max_new_tokens=8", "eval.max_new_tokens=8", "train.max_steps=1"]
    cfg = load_config(None, [f"model.name={tiny_model_dir}", f"output_dir={tmp_path}", "name=fixed", *sizes])
    Refiner(cfg).run()
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable, str(REPO / "benchmarks" / "fixed_pairs.py"), str(tmp_path / "runs" / "fixed"), "--iteration", "1",
        "--arm", "control:", "--arm", "cut:train.rejected_window=1,train.anchor=5", "--seeds", "0,1", "--eval-limit", "4",
        "--tag", "t", "--results", str(results),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((results / "fixed-pairs-t.json").read_text())
    assert PROVENANCE <= set(result) and result["held_out"] == 4 and result["pairs"]["n"] == 3
    control, cut = result["arms"]["control"], result["arms"]["cut"]
    assert cut["overrides"] == ["train.rejected_window=1", "train.anchor=5"]
    assert set(control["seeds"]) == {"0", "1"} and all(len(s["verdicts"]) == 4 for s in control["seeds"].values())
    diff = cut["minus_control"]
    by_hand = [
        (cut["seeds"][s]["verdicts"][pid] == "correct") - (control["seeds"][s]["verdicts"][pid] == "correct")
        for s in ("0", "1") for pid in control["seeds"][s]["verdicts"]
    ]  # fmt: skip
    assert diff["n"] == 8 and diff["mean"] == sum(by_hand) / 8 and diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    assert set(control["seeds"]["0"]["trainer"]) >= {"logps/chosen", "logps/rejected"}
    assert 0 <= result["policy_accuracy"] <= 1 and control["minus_policy"]["n"] == 8
    assert "| cut |" in (results / "fixed-pairs-t.md").read_text()
    # each arm and seed trained once, into its own folder
    trained = sorted(p.parent.parent.name for p in (tmp_path / "runs" / "fixed" / "fixed-pairs-1").glob("*/model/config.json"))
    assert trained == ["control-seed0", "control-seed1", "cut-seed0", "cut-seed1"]


@pytest.mark.parametrize(
    ("vote", "constrain", "decodings"),
    [
        ("2", "none,schema", ["greedy", "vote@2", "greedy + grammar", "vote@2 + grammar"]),
        ("0", "none,schema", ["greedy", "greedy + grammar"]),
        ("0", "scope", ["greedy + scoped grammar"]),
    ],
)
def test_spider_decoding_gives_each_model_its_rows(tmp_path, tiny_model_dir, vote, constrain, decodings):
    """Four rows a model with --vote N; with --vote 0 the greedy ones only (the base model, cheaply); --constrain
    says under which grammars."""
    shared_dataset("spider")
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "spider_decoding.py"), "--no-base", "--model", tiny_model_dir,
         "--limit", "2", "--vote", vote, "--constrain", constrain, "--output", str(tmp_path), "--results", str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads((results / "spider-decoding.json").read_text())["rows"]
    assert [r["decoding"] for r in rows] == decodings
    assert all(r["n"] == 2 and sum(r["counts"].values()) == 2 for r in rows)
    table = (results / "spider-decoding.md").read_text()
    assert f"| {decodings[-1]} | 2 |" in table and "| forbidden |" in table, "every verdict kind is a column"



def test_paired_compares_two_eval_folders_problem_by_problem(tmp_path):
    for name, verdicts in (("a", ["correct", "correct", "wrong_result"]), ("b", ["correct", "runtime_error", "wrong_result"])):
        (tmp_path / name).mkdir()
        rows = [{"id": f"p{i}", "verdicts": [v]} for i, v in enumerate(verdicts)]
        (tmp_path / name / "eval_verdicts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "paired.py"), str(tmp_path / "a"), str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "A: 66.7% of 3" in done.stdout and "B: 33.3% of 3" in done.stdout
    assert "A - B: +33.3%" in done.stdout and "only A right 1, only B right 0" in done.stdout
    voted = tmp_path / "b" / "vote_verdicts.jsonl"  # a verdicts file stands for its answers: B's voted ones
    voted.write_text("".join(json.dumps({"id": f"p{i}", "verdicts": ["correct"]}) + "\n" for i in range(3)))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "paired.py"), str(tmp_path / "a"), str(voted)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "B: 100.0% of 3" in done.stdout and "A - B: -33.3%" in done.stdout, done.stderr


def test_explain_check_sorts_answers_by_what_sqlite_says_of_them(tmp_path):
    answers = {
        "airline-1": ("SELECT origin, min(distance) FROM flight GROUP BY origin", False),
        "airline-2": ("SELECT max(price) FROM flight WHERE", False),
        "airline-3": ("SELECT country FROM airlines", False),
        "airline-4": ("SELECT invented_column FROM flight", False),
        "airline-5": ("SELECT founded FROM flight", False),  # a column of airline, not of flight
        "airline-6": ("SELECT name FROM airline WHERE", True),
    }
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "eval_verdicts.jsonl").write_text("".join(json.dumps({"id": i, "sql": [sql], "verdicts": ["x"]}) + "\n" for i, (sql, _) in answers.items()))
    (folder / "eval_samples.jsonl").write_text("".join(json.dumps({"id": i, "truncated": [cut]}) + "\n" for i, (_, cut) in answers.items()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "explain_check.py"), str(folder), "--tasks", "builtin:heldout",
                           "--results", str(tmp_path / "results")], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [row] = json.loads((tmp_path / "results" / "explain-check.json").read_text())["folders"]
    assert row["kinds"] == {"compiles": 1, "syntax_error": 1, "no_such_table": 1, "column_invented": 1, "column_out_of_scope": 1, "truncated": 1}
    assert PROVENANCE <= set(json.loads((tmp_path / "results" / "explain-check.json").read_text()))
    (folder / "eval_verdicts.jsonl").write_text(json.dumps({"id": "nowhere-1", "sql": ["SELECT 1"], "verdicts": ["x"]}) + "\n")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "explain_check.py"), str(folder), "--tasks", "builtin:heldout",
                           "--results", str(tmp_path / "results")], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "nowhere-1" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_constructs_counts_right_answers_and_uses_per_construct(tmp_path):
    answers = {"airline-1": ("SELECT origin, min(distance) FROM flight GROUP BY origin", "correct"),  # its gold: GROUP BY, min
               "airline-2": ("SELECT price FROM flight ORDER BY distance LIMIT 1", "wrong_result")}  # its gold: max(), no ORDER BY
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "eval_verdicts.jsonl").write_text("".join(json.dumps({"id": i, "sql": [sql], "verdicts": [v]}) + "\n" for i, (sql, v) in answers.items()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "constructs.py"), str(folder), "--tasks", "builtin:heldout",
                           "--results", str(tmp_path / "results")], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [row] = json.loads((tmp_path / "results" / "constructs.json").read_text())["folders"]
    counts = row["constructs"]
    assert counts["GROUP BY"] == {"gold_uses": 1, "right": 1, "answers_use": 1}
    assert counts["aggregate"] == {"gold_uses": 2, "right": 1, "answers_use": 1}
    assert counts["ORDER BY"] == {"gold_uses": 0, "right": 0, "answers_use": 1} == counts["LIMIT"]
