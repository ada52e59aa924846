"""Every bad input of issue 17 ends in one line naming the file or option, exit code 2, and nothing changed."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from codelutra.cli import main


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` with a digest of its bytes (links as their target): what 'nothing changed' compares."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            state[str(path)] = "-> " + os.readlink(path)
        elif path.is_file():
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[str(path)] = "dir"
    return state


def _refused(capsys, root: Path, argv: list[str], *named: str) -> str:
    """Run the command; assert exit 2, one line on stderr naming `named`, no traceback, `root` unchanged."""
    before = _tree(root)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in named:
        assert name in lines[0], lines[0]
    assert _tree(root) == before, "a refused command changed files"
    return lines[0]


# --- the config -------------------------------------------------------------------------------


def test_config_with_a_non_utf8_byte(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"train:\n  beta: \xff\n")
    line = _refused(capsys, tmp_path, ["run", "--config", str(config), "--output", str(tmp_path)], str(config), "UTF-8")
    assert "byte" in line


def test_config_naming_a_directory(tmp_path, capsys):
    _refused(capsys, tmp_path, ["run", "--config", str(tmp_path), "--output", str(tmp_path)], str(tmp_path), "directory")


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.beta=.inf", "train.beta"),
        ("sampling.temperature=1e400", "sampling.temperature"),  # YAML reads it as a string, float() as inf
        ("train.learning_rate=.nan", "train.learning_rate"),
        ("min_gain=-.inf", "min_gain"),
        ("verify.timeout_s=.inf", "verify.timeout_s"),
        ("train.lora_dropout=.nan", "train.lora_dropout"),
    ],
)
def test_floats_must_be_finite(tmp_path, capsys, override, field):
    _refused(capsys, tmp_path, ["run", "--set", override, "--output", str(tmp_path)], field, "finite")


def test_a_float_in_the_config_file_must_be_finite(tmp_path, capsys):
    config = tmp_path / "inf.yaml"
    config.write_text("sampling:\n  top_p: .nan\n")
    _refused(capsys, tmp_path, ["run", "--config", str(config), "--output", str(tmp_path)], str(config), "sampling.top_p")


# --- output folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "eval"])
def test_output_that_is_a_file(tmp_path, capsys, command):
    file = tmp_path / "results.txt"
    file.write_text("keep me\n")
    _refused(capsys, tmp_path, [command, "--output", str(file)], "--output", str(file), "is a file")


@pytest.mark.parametrize("command", ["run", "eval"])
def test_output_that_is_not_writable(tmp_path, capsys, unwritable_dir, command):
    target = unwritable_dir / "out"
    _refused(capsys, tmp_path, [command, "--output", str(target)], "--output", str(target), "cannot write")


# --- codelutra verify ---------------------------------------------------------------------------


@pytest.fixture
def candidates(tmp_path) -> Path:
    path = tmp_path / "candidates.jsonl"
    path.write_text(json.dumps({"id": 1, "task": "python", "candidate": "x = 1", "tests": []}) + "\n")
    return path


def test_verify_out_is_a_directory(tmp_path, capsys, candidates):
    _refused(capsys, tmp_path, ["verify", str(candidates), "--out", str(tmp_path)], "--out", "folder")


def test_verify_out_is_not_writable(tmp_path, capsys, candidates, unwritable_dir):
    target = unwritable_dir / "verdicts.jsonl"
    _refused(capsys, tmp_path, ["verify", str(candidates), "--out", str(target)], "--out", str(target), "cannot write")


def test_verify_out_is_the_input(tmp_path, capsys, candidates, monkeypatch):
    link = tmp_path / "link.jsonl"
    link.symlink_to(candidates)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for out in (str(candidates), str(link), "../candidates.jsonl", "./../sub/../candidates.jsonl"):
        _refused(capsys, tmp_path, ["verify", str(candidates), "--out", out], "--out", "input")
    # and the other way round: the input named through the link
    _refused(capsys, tmp_path, ["verify", str(link), "--out", "../candidates.jsonl"], "--out", "input")


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-1"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "inf"], "--timeout"),
        (["--workers", "0"], "--workers"),
        (["--workers", "-2"], "--workers"),
        (["--python", "/no/such/python"], "--python"),
    ],
)
def test_verify_flags_are_validated_like_the_config(tmp_path, capsys, candidates, flags, named):
    out = tmp_path / "verdicts.jsonl"
    _refused(capsys, tmp_path, ["verify", str(candidates), "--out", str(out), *flags], named)


# --- runs and evaluations with a model ------------------------------------------------------------


def _sql_tasks(root: Path, questions: list[str]) -> Path:
    """A JSONL SQL task set over a one-table database."""
    db = sqlite3.connect(root / "shop.sqlite")
    db.execute("CREATE TABLE item (item_id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO item VALUES (?, ?)", [(1, "pen"), (2, "book")])
    db.commit()
    db.close()
    path = root / "tasks.jsonl"
    rows = [{"id": f"q{i}", "question": q, "gold_sql": "SELECT count(*) FROM item", "db_path": "shop.sqlite"} for i, q in enumerate(questions)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_folder_is_reused_only_for_the_same_inputs(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "out"
    base = ["eval", "--model", tiny_model_dir, "--tasks", "builtin:heldout", "--output", str(out), "--set", "eval.max_new_tokens=8"]
    assert main([*base, "--limit", "2"]) == 0
    assert json.loads((out / "eval.json").read_text())["n"] == 2
    assert main([*base, "--limit", "2"]) == 0  # the same evaluation: its results are reused
    assert main([*base, "--limit", "2", "--set", "eval.base=false"]) == 0  # whether a run evaluates its base: not an input
    _refused(capsys, tmp_path, [*base, "--limit", "3"], str(out), "tasks", "start fresh")
    _refused(capsys, tmp_path, [*base, "--limit", "2", "--set", "prompt.schema_style=create"], "settings.prompt.schema_style")
    _refused(capsys, tmp_path, [*base[:-1], "eval.max_new_tokens=9", "--limit", "2"], "settings.eval.max_new_tokens")


def test_eval_folder_counts_a_database_by_its_file_name_not_its_folder(tmp_path, capsys, tiny_model_dir):
    """Databases elsewhere (another machine, another disk) are the same evaluation; another database is not."""
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    tasks = _sql_tasks(here, ["How many items are there?"])
    out = tmp_path / "out"
    base = ["eval", "--model", tiny_model_dir, "--output", str(out), "--set", "eval.max_new_tokens=8"]
    assert main([*base, "--tasks", str(tasks)]) == 0
    result = (out / "eval.json").read_bytes()
    here.rename(there)
    assert main([*base, "--tasks", str(there / "tasks.jsonl")]) == 0
    assert (out / "eval.json").read_bytes() == result, "the evaluation was redone"
    (there / "shop.sqlite").rename(there / "store.sqlite")
    (there / "tasks.jsonl").write_text((there / "tasks.jsonl").read_text().replace("shop.sqlite", "store.sqlite"))
    _refused(capsys, tmp_path, [*base, "--tasks", str(there / "tasks.jsonl")], str(out), "tasks")


def test_eval_folder_from_an_older_version_is_checked_by_its_eval_json(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval.json").write_text(json.dumps({"model": "someone/else", "n": 2, "accuracy": 0.5, "counts": {}}))
    argv = ["eval", "--model", tiny_model_dir, "--tasks", "builtin:heldout", "--limit", "2", "--output", str(out)]
    _refused(capsys, tmp_path, argv, str(out), "model")


@pytest.mark.parametrize("model", ["/no/such/model", "empty-dir"])
def test_a_run_with_a_wrong_model_claims_no_name(tmp_path, capsys, model):
    if model == "empty-dir":
        (tmp_path / "empty-dir").mkdir()
        model = str(tmp_path / "empty-dir")
    argv = ["run", "--output", str(tmp_path), "--name", "r", "--set", f"model.name={model}", "--set", "train_tasks.limit=2"]
    _refused(capsys, tmp_path, argv, "model")
    assert not (tmp_path / "runs").exists()


def test_a_run_whose_training_prompts_are_all_too_long_claims_no_name(tmp_path, capsys, tiny_model_dir):
    argv = ["run", "--output", str(tmp_path), "--name", "r", "--set", f"model.name={tiny_model_dir}",
            "--set", "train_tasks.limit=2", "--set", "train.max_length=16"]
    _refused(capsys, tmp_path, argv, "builtin:train", "too long", "train.max_length")
    assert not (tmp_path / "runs").exists()


def test_a_prompt_longer_than_the_context_is_skipped_like_a_bad_problem(tmp_path, capsys, tiny_model_dir):
    tasks = _sql_tasks(tmp_path, ["How many items are there?", "word " * 3000, "Count the items."])  # context: 2048
    out = tmp_path / "out"
    argv = ["eval", "--model", tiny_model_dir, "--tasks", str(tasks), "--output", str(out), "--set", "eval.max_new_tokens=8"]
    assert main(argv) == 0
    printed = " ".join(capsys.readouterr().err.split())  # messages go to stderr, perhaps wrapped
    assert "problem q1: prompt too long" in printed and "context of 2048" in printed
    assert json.loads((out / "eval.json").read_text())["n"] == 2
    assert [row["id"] for row in map(json.loads, (out / "eval_samples.jsonl").read_text().splitlines())] == ["q0", "q2"]


def test_only_over_long_prompts_is_one_line(tmp_path, capsys, tiny_model_dir):
    tasks = _sql_tasks(tmp_path, ["word " * 3000])
    argv = ["eval", "--model", tiny_model_dir, "--tasks", str(tasks), "--output", str(tmp_path / "out")]
    _refused(capsys, tmp_path, argv, str(tasks), "too long")
