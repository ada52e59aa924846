"""Issue 27: what `run`, `eval`, `ask`, `export` and `verify` take and refuse (one line, exit code 2, nothing written)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from codelutra.config import MAX_VOTE, load_config
from tests.test_bad_input import _refused, unwritable_dir  # noqa: F401  (a fixture, used by name)


@pytest.fixture
def shop_db(tmp_path) -> Path:
    """A one-table SQLite database: item (1, pen), (2, book), (3, pen)."""
    path = tmp_path / "shop.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE item (item_id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO item VALUES (?, ?)", [(1, "pen"), (2, "book"), (3, "pen")])
    db.commit()
    db.close()
    return path


# --- the config -----------------------------------------------------------------------------------


@pytest.mark.parametrize("override, field", [("train.batch_size=true", "train.batch_size"), ("train.beta=false", "train.beta"),
                                             ("eval.vote=true", "eval.vote"), ("train.max_steps=true", "train.max_steps")])
def test_a_bool_is_not_a_number(tmp_path, capsys, override, field):
    _refused(capsys, tmp_path, ["run", "--set", override, "--output", str(tmp_path)], field, "expected a number")


def test_numbers_are_still_numbers():
    cfg = load_config(None, ["train.batch_size=3", "train.beta=1", "train.learning_rate=1e-4", "train.lora=false"])
    assert cfg.train.batch_size == 3 and cfg.train.beta == 1.0 and isinstance(cfg.train.beta, float)
    assert cfg.train.learning_rate == 1e-4 and cfg.train.lora is False


# --- --vote ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "ask"])
@pytest.mark.parametrize("vote, named", [("--vote", "--vote"), ("--set", "eval.vote")])
@pytest.mark.parametrize("value", ["100000000000000000000", str(MAX_VOTE + 1)])
def test_vote_has_an_upper_bound(tmp_path, capsys, shop_db, command, vote, named, value):
    given = ["--vote", value] if vote == "--vote" else ["--set", f"eval.vote={value}"]
    argv = ["eval", "--output", str(tmp_path / "out")] if command == "eval" else ["ask", "How many?", "--db", str(shop_db)]
    line = _refused(capsys, tmp_path, [*argv, *given], named)
    assert str(MAX_VOTE) in line
    assert load_config(None, [f"eval.vote={MAX_VOTE}"]).eval.vote == MAX_VOTE


def test_vote_below_zero_is_refused(tmp_path, capsys):
    _refused(capsys, tmp_path, ["eval", "--vote", "-1", "--output", str(tmp_path / "out")], "--vote", "got -1")


# --- a model folder that cannot load ------------------------------------------------------------


@pytest.fixture(params=["config-without-weights", "empty"])
def weightless_model(request, tmp_path, tiny_model_dir) -> Path:
    """The tiny model's folder without its weights (config and tokenizer kept), or an empty folder."""
    folder = tmp_path / request.param
    folder.mkdir()
    if request.param == "config-without-weights":
        for item in Path(tiny_model_dir).iterdir():
            if not item.name.endswith(".safetensors"):
                shutil.copy2(item, folder / item.name)
    return folder


@pytest.mark.parametrize("command", ["run", "eval", "ask", "export"])
def test_a_model_folder_without_weights_is_refused_before_anything_is_written(tmp_path, capsys, weightless_model, shop_db,
                                                                             command):
    model = str(weightless_model)
    argv = {
        "run": ["run", "--output", str(tmp_path), "--set", f"model.name={model}", "--set", "train_tasks.limit=2"],
        "eval": ["eval", "--model", model, "--limit", "2", "--output", str(tmp_path / "out")],
        "ask": ["ask", "How many items?", "--model", model, "--db", str(shop_db)],
        "export": ["export", "--model", model, "--format", "hf", "--out", str(tmp_path / "exported")],
    }[command]
    line = _refused(capsys, tmp_path, argv, model)
    assert ("no weights" in line) if weightless_model.name != "empty" else ("config.json" in line)


# --- export ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["read-only", "proc", "below-a-file"])
def test_export_to_a_folder_it_cannot_write_is_one_line(tmp_path, capsys, tiny_model_dir, unwritable_dir, where):
    (tmp_path / "notes.txt").write_text("keep me\n")
    out = {"read-only": unwritable_dir / "m.gguf", "proc": Path("/proc/codelutra/m.gguf"),
           "below-a-file": tmp_path / "notes.txt" / "sub" / "m.gguf"}[where]  # fmt: skip
    line = _refused(capsys, tmp_path, ["export", "--model", tiny_model_dir, "--format", "gguf", "--out", str(out)], "--out")
    assert ("is a file" in line) if where == "below-a-file" else ("cannot write" in line)
