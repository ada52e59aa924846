"""Issue 27: what `run`, `eval`, `ask`, `export` and `verify` take and refuse (one line, exit code 2, nothing written)."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from codelutra.cli import main
from codelutra.config import MAX_VOTE, load_config
from codelutra.errors import UserError
from codelutra.execution.engines import BadAddress, usable_address
from tests.test_bad_input import _refused


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


# --- database addresses ---------------------------------------------------------------------------


def test_one_home_for_database_addresses(tmp_path, shop_db):
    assert usable_address(f"sqlite://{shop_db}") == str(shop_db)
    assert usable_address(str(shop_db)) == str(shop_db)
    assert usable_address("postgresql://reader@/shop?host=/tmp") == "postgresql://reader@/shop?host=/tmp"
    for address, problem in [(str(tmp_path), "is a folder"), (f"sqlite://{tmp_path}", "is a folder"),
                             (str(tmp_path / "missing.sqlite"), "database not found"),
                             (f"duckdb://{shop_db}", "is a SQLite database, not a DuckDB one"),
                             ("postgresql://reader:pw@/shop", "password")]:  # fmt: skip
        with pytest.raises(BadAddress, match=problem):
            usable_address(address)


def test_a_duckdb_file_named_as_sqlite_says_so(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "shop.duckdb"
    duckdb.connect(str(path)).close()
    assert usable_address(f"duckdb://{path}") == f"duckdb://{path}"
    with pytest.raises(BadAddress, match=f"a DuckDB database, not a SQLite one: name it as duckdb://{path}"):
        usable_address(str(path))


def _sql_line(db: str, gold: str, candidate: str, id=1) -> str:
    return json.dumps({"id": id, "task": "sql", "db": db, "gold": gold, "candidate": candidate}) + "\n"


def test_verify_takes_sqlite_addresses_and_names_bad_databases(tmp_path, shop_db):
    candidates, out = tmp_path / "candidates.jsonl", tmp_path / "verdicts.jsonl"
    count = "SELECT count(*) FROM item"
    candidates.write_text(_sql_line(f"sqlite://{shop_db}", count, count, 1) + _sql_line(str(tmp_path), count, count, 2)
                          + _sql_line(f"duckdb://{shop_db}", count, count, 3))  # fmt: skip
    assert main(["verify", str(candidates), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["verdict"] for row in rows] == ["correct", "invalid", "invalid"]
    assert "line 2: field 'db'" in rows[1]["detail"] and "is a folder" in rows[1]["detail"]
    assert "line 3: field 'db'" in rows[2]["detail"] and "is a SQLite database" in rows[2]["detail"]


def test_a_task_file_naming_a_folder_as_database_skips_the_problem_saying_so(tmp_path):
    from codelutra.tasks.sql import load_sql_tasks

    (tmp_path / "db").mkdir()
    rows = [{"id": "q1", "question": "How many?", "gold_sql": "SELECT 1", "db_path": "db"}]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=f"no task left: .* {tmp_path / 'db'} is a folder, not a database file"):
        load_sql_tasks(tmp_path / "tasks.jsonl")


# --- verify ---------------------------------------------------------------------------------------


def test_verify_refuses_to_replace_an_existing_file_unless_told(tmp_path, capsys, shop_db):
    candidates, out = tmp_path / "candidates.jsonl", tmp_path / "verdicts.jsonl"
    candidates.write_text(_sql_line(str(shop_db), "SELECT count(*) FROM item", "SELECT count(*) FROM item"))
    out.write_text("an unrelated file\n")
    _refused(capsys, tmp_path, ["verify", str(candidates), "--out", str(out)], str(out), "already exists", "--overwrite")
    assert main(["verify", str(candidates), "--out", str(out), "--overwrite"]) == 0
    assert [json.loads(line)["verdict"] for line in out.read_text().splitlines()] == ["correct"]


def test_verify_refuses_a_file_without_candidates(tmp_path, capsys):
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text("\n  \n")
    out = tmp_path / "verdicts.jsonl"
    _refused(capsys, tmp_path, ["verify", str(candidates), "--out", str(out)], str(candidates), "no candidates")


def test_verify_takes_the_scoring_rule_from_the_config(tmp_path, capsys, shop_db):
    # DISTINCT in the gold only: a multiset differs (execution); the Spider rule removes DISTINCT from both.
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text(_sql_line(str(shop_db), "SELECT DISTINCT name FROM item", "SELECT name FROM item"))
    config = tmp_path / "spider.yaml"
    config.write_text("verify:\n  match: spider\n")
    verdicts = {}
    for name, flags in [("default", []), ("set", ["--set", "verify.match=spider"]), ("config", ["--config", str(config)])]:
        out = tmp_path / f"{name}.jsonl"
        assert main(["verify", str(candidates), "--out", str(out), *flags]) == 0
        verdicts[name] = json.loads(out.read_text())["verdict"]
    assert verdicts == {"default": "wrong_result", "set": "correct", "config": "correct"}
    # Right by coincidence on the database, not on its perturbed copies (verify.variants).
    candidates.write_text(_sql_line(str(shop_db), "SELECT count(*) FROM item", "SELECT 3"))
    out, variants = tmp_path / "variants.jsonl", ["--set", "verify.variants=2", "--set", f"verify.variants_dir={tmp_path}/copies"]
    assert main(["verify", str(candidates), "--out", str(out), *variants]) == 0
    row = json.loads(out.read_text())
    assert row["verdict"] == "wrong_result" and "not on variant" in row["detail"], row
    _refused(capsys, tmp_path, ["verify", str(candidates), "--out", str(tmp_path / "x.jsonl"), "--set", "verify.match=nope"],
             "verify.match")  # fmt: skip


# --- ask ------------------------------------------------------------------------------------------


def _must_not_load_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded for a question that should have been refused")

    monkeypatch.setattr("codelutra.generation.backends.open_backend", refuse)


@pytest.mark.parametrize("address", ["postgresql://reader:secret@/shop?host=/tmp", "host=/tmp dbname=shop password=secret"])
def test_ask_refuses_a_password_in_the_address_without_echoing_it(tmp_path, capsys, address):
    line = _refused(capsys, tmp_path, ["ask", "How many?", "--db", address], "--db", "password")
    assert "secret" not in line


def test_ask_refuses_an_empty_question(tmp_path, capsys, tiny_model_dir, shop_db, monkeypatch):
    _must_not_load_weights(monkeypatch)
    _refused(capsys, tmp_path, ["ask", "  \n", "--model", tiny_model_dir, "--db", str(shop_db)], "question", "empty")
    (tmp_path / "q.txt").write_text("\n")
    _refused(capsys, tmp_path, ["ask", "--question-file", str(tmp_path / "q.txt"), "--model", tiny_model_dir, "--db", str(shop_db)],
             "question", "empty")  # fmt: skip


def test_ask_refuses_a_question_longer_than_the_context_before_loading_the_model(tmp_path, capsys, tiny_model_dir, shop_db,
                                                                                 monkeypatch):
    _must_not_load_weights(monkeypatch)
    question = tmp_path / "long.txt"
    question.write_text("How many items are there? " * 1000)  # the tiny model's context: 2048 tokens
    line = _refused(capsys, tmp_path, ["ask", "--question-file", str(question), "--model", tiny_model_dir, "--db", str(shop_db)],
                    "question", "too long", "context of 2048")  # fmt: skip
    assert "tokens" in line


def test_ask_refuses_a_question_file_too_large_to_be_a_question(tmp_path, capsys, tiny_model_dir, shop_db, monkeypatch):
    _must_not_load_weights(monkeypatch)
    question = tmp_path / "big.txt"
    question.write_bytes(b"How many? " * 10_000)  # 100 KB
    _refused(capsys, tmp_path, ["ask", "--question-file", str(question), "--model", tiny_model_dir, "--db", str(shop_db)],
             "--question-file", "longer than 64 KiB")  # fmt: skip


def test_ask_takes_the_question_from_a_file_or_standard_input(tmp_path, capsys, tiny_model_dir, shop_db, monkeypatch):
    asked = []
    monkeypatch.setattr("codelutra.serving.ask.ask", lambda model, db, question, cfg, vote: asked.append(question) or 1 / 0)
    (tmp_path / "q.txt").write_text("How many pens?\n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Combien de stylos ?")))
    for source in (str(tmp_path / "q.txt"), "-"):
        with pytest.raises(ZeroDivisionError):  # stopped where the question reaches the model
            main(["ask", "--question-file", source, "--model", tiny_model_dir, "--db", str(shop_db)])
    assert asked == ["How many pens?", "Combien de stylos ?"]
    _refused(capsys, tmp_path, ["ask", "--db", str(shop_db)], "question", "--question-file")
    _refused(capsys, tmp_path, ["ask", "Why?", "--question-file", str(tmp_path / "q.txt"), "--db", str(shop_db)], "question")
    (tmp_path / "latin1.txt").write_bytes("Combien co\xfbte ?".encode("latin-1"))
    _refused(capsys, tmp_path, ["ask", "--question-file", str(tmp_path / "latin1.txt"), "--db", str(shop_db)],
             str(tmp_path / "latin1.txt"), "UTF-8")  # fmt: skip
    missing = str(tmp_path / "none.txt")
    _refused(capsys, tmp_path, ["ask", "--question-file", missing, "--db", str(shop_db)], missing, "cannot read")


def test_ask_help_names_every_engine(capsys):
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "duckdb:///" in text and "postgresql://" in text and "sqlite:///" in text and "--question-file" in text


def test_ask_takes_a_sqlite_address(tmp_path, capsys, tiny_model_dir, shop_db):
    code = main(["ask", "How many items are there?", "--model", tiny_model_dir, "--db", f"sqlite://{shop_db}",
                 "--set", "eval.max_new_tokens=8"])  # fmt: skip
    assert code in (0, 1), capsys.readouterr().err  # a random model's query may fail, but the database was found


def test_ask_refuses_a_folder_as_database(tmp_path, capsys):
    _refused(capsys, tmp_path, ["ask", "How many?", "--db", str(tmp_path)], "--db", "is a folder")
