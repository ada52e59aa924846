"""The command line: clear one-line errors with exit code 2, and `codelutra eval` on the task layouts."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import pytest

from codelutra.cli import main
from tests.conftest import shared_dataset


def _codelutra(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codelutra.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize(
    "config_text, expected",
    [
        ("train:\n  beta: high\n", "train.beta"),
        ("sampling:\n  n: 0\n", "sampling.n"),
        ("trian: {}\n", "trian"),
        ("train: [1, 2\n", "not valid YAML"),
        ("train_tasks:\n  path: /nonexistent/questions.jsonl\n", "/nonexistent/questions.jsonl"),
        ("train: {lora: false, lora_adapter: continued}\n", "lora_adapter: continued"),
    ],
)
def test_bad_config_is_one_clear_line_and_exit_2(tmp_path, config_text, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(config_text)
    result = _codelutra("run", "--config", str(config), "--output", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert expected in lines[0]


def test_bad_override_names_the_key(tmp_path):
    result = _codelutra("run", "--set", "train.nope=1", "--output", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "train.nope" in result.stderr and "Traceback" not in result.stderr


def _spider_layout(root, questions_file: str, records: list[dict]) -> None:
    db_dir = root / "database" / "shop"
    db_dir.mkdir(parents=True)
    db = sqlite3.connect(db_dir / "shop.sqlite")
    db.execute("CREATE TABLE item (item_id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    db.executemany("INSERT INTO item VALUES (?, ?, ?)", [(1, "pen", 1.5), (2, "book", 12.0), (3, "lamp", 30.0)])
    db.commit()
    db.close()
    (root / questions_file).write_text(json.dumps(records))


@pytest.mark.parametrize("questions_file", ["dev.json", "train_spider.json"])
def test_eval_on_a_spider_layout(tmp_path, tiny_model_dir, questions_file):
    records = [
        {"db_id": "shop", "question": "How many items are there?", "query": "SELECT count(*) FROM item"},
        {"db_id": "shop", "question": "List item names.", "query": "SELECT name FROM item"},
        {"db_id": "shop", "question": "Broken gold.", "query": "SELECT nope FROM item"},
    ]
    _spider_layout(tmp_path / "spider", questions_file, records)
    out = tmp_path / "out"
    code = main(["eval", "--model", tiny_model_dir, "--tasks", str(tmp_path / "spider"), "--output", str(out),
                 "--set", "eval.max_new_tokens=8"])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["n"] == 2  # the problem whose gold query fails is reported and skipped
    assert sum(result["counts"].values()) == 2


def test_eval_prints_one_line_per_cause_of_skipping_and_lists_each_problem_beside_its_output(tmp_path, tiny_model_dir, capsys):
    gone = [{"db_id": "gone", "question": f"Question {i}?", "query": "SELECT 1"} for i in range(5)]
    records = [
        {"db_id": "shop", "question": "How many items are there?", "query": "SELECT count(*) FROM item"},
        *gone,
        {"db_id": "shop", "question": "Broken gold.", "query": "SELECT nope FROM item"},
    ]
    _spider_layout(tmp_path / "spider", "dev.json", records)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["eval", "--model", tiny_model_dir, "--tasks", str(tmp_path / "spider"), "--output", str(out),
                 "--set", "eval.max_new_tokens=8"]) == 0
    skipped_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("skipped", "eval: 1"))]
    missing = tmp_path / "spider" / "database" / "gone" / "gone.sqlite"
    assert skipped_lines == [
        f"skipped 5 problems of {tmp_path / 'spider' / 'dev.json'}: database not found: {missing}",
        f"skipped {tmp_path / 'spider' / 'dev.json'}: problem dev-6: gold query failed: no such column: nope",
        f"eval: 1 problems (6 skipped, each listed in {out / 'skipped.jsonl'})",
    ]
    listed = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [row["id"] for row in listed] == [f"dev-{i}" for i in range(1, 7)]
    assert {row["reason"] for row in listed[:5]} == {f"database not found: {missing}"}
    assert json.loads((out / "eval.json").read_text())["n"] == 1


def test_eval_accepts_a_run_iteration_folder(tmp_path, tiny_model_dir):
    run_iter = tmp_path / "runs" / "r" / "iter_1"
    shutil.copytree(tiny_model_dir, run_iter / "model")
    out = tmp_path / "out"
    assert main(["eval", "--model", str(run_iter), "--tasks", "builtin:heldout", "--limit", "3", "--output", str(out),
                 "--set", "eval.max_new_tokens=8"]) == 0
    assert json.loads((out / "eval.json").read_text())["model"] == str(run_iter / "model")


def test_eval_of_an_untrained_iteration_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "runs" / "r" / "iter_3").mkdir(parents=True)
    assert main(["eval", "--model", str(tmp_path / "runs" / "r" / "iter_3")]) == 2
    assert "no trained model" in capsys.readouterr().err


def test_eval_on_shared_spider(tmp_path, tiny_model_dir):
    spider = shared_dataset("spider")
    out = tmp_path / "out"
    assert main(["eval", "--model", tiny_model_dir, "--tasks", str(spider), "--limit", "4", "--output", str(out),
                 "--set", "eval.max_new_tokens=8"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["n"] == 4
