"""`codelutra ask`: a question about a built-in database answered with a query and its result."""

from __future__ import annotations

import subprocess
import sys

import pytest

from codelutra.config import load_config
from codelutra.serving.ask import ask, decoding_constraint, result_table
from codelutra.tasks.sources import load_tasks


@pytest.fixture(scope="module")
def builtin_db() -> str:
    tasks, _ = load_tasks(load_config().eval_tasks)
    return tasks[0].db_path


def _ask(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codelutra.cli", "ask", *args], capture_output=True, text=True, timeout=600)


def test_ask_prints_the_query_and_its_result_or_says_why_not(tiny_model_dir, builtin_db):
    result = _ask("How many flights are there?", "--model", tiny_model_dir, "--db", builtin_db, "--show-schema",
                  "--set", "eval.max_new_tokens=16")
    assert "Traceback" not in result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line.endswith(")") and " PK" in result.stdout  # the compact schema the model is shown
    # A random model rarely writes a query that runs: either a result table or one line saying why not.
    if result.returncode == 0:
        assert "rows" in result.stdout
    else:
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith(("codelutra: the query failed", "codelutra: the model wrote no SQL"))


def test_ask_decodes_under_the_grammar_by_default_and_says_so(tiny_model_dir, builtin_db):
    on = _ask("How many flights are there?", "--model", tiny_model_dir, "--db", builtin_db, "--set", "eval.max_new_tokens=16")
    off = _ask("How many flights are there?", "--model", tiny_model_dir, "--db", builtin_db, "--set", "eval.max_new_tokens=16",
               "--constrain", "none")
    assert "decoding: under the database's grammar" in on.stderr and "Traceback" not in on.stderr
    assert "decoding: unconstrained (--constrain none)" in off.stderr and "Traceback" not in off.stderr


@pytest.mark.parametrize(
    "requested, backend, constrain, said",
    [
        (None, "transformers", "scope", "a one-table query only its table's"),  # any engine: the grammar is its dialect
        (None, "vllm", "scope", "a one-table query only its table's"),
        ("schema", "transformers", "schema", "only its tables and columns (--constrain none: off)"),
        ("none", "transformers", "none", "--constrain none"),
        (None, "openai", "none", "the openai backend takes no grammar"),
    ],
)
def test_the_default_constraint_is_the_grammar_where_it_can_be(requested, backend, constrain, said):
    assert decoding_constraint(requested, backend)[0] == constrain
    assert said in decoding_constraint(requested, backend)[1]


def test_ask_with_vote_answers_with_the_voted_candidate(tiny_model_dir, builtin_db):
    cfg = load_config(None, ["eval.max_new_tokens=16"])
    answer = ask(tiny_model_dir, builtin_db, "List every airline name.", cfg, vote=4)
    assert answer.candidates == 4 and answer.vote is not None
    assert sum(answer.vote.group_sizes) + answer.vote.failed == 4
    if answer.vote.group_sizes:  # something ran: the answer is from the largest group, so it ran
        assert answer.result.kind == "ok"


def test_ask_greedy_is_deterministic(tiny_model_dir, builtin_db):
    cfg = load_config(None, ["eval.max_new_tokens=16"])
    first = ask(tiny_model_dir, builtin_db, "How many flights are there?", cfg)
    again = ask(tiny_model_dir, builtin_db, "How many flights are there?", cfg)
    assert first.sql == again.sql and first.vote is None


@pytest.mark.parametrize("db, expected", [("/nonexistent/my.sqlite", "database not found"), ("NOT_A_DB", "cannot read it")])
def test_a_bad_db_is_one_line_and_exit_2(tmp_path, db, expected):
    if db == "NOT_A_DB":
        db = str(tmp_path / "notes.sqlite")
        (tmp_path / "notes.sqlite").write_text("this is not a database, just text that is long enough " * 20)
    result = _ask("How many?", "--db", db)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]


def test_result_table_caps_the_rows_it_prints():
    from rich.console import Console

    console = Console(width=80, record=True)
    console.print(result_table([(i, f"name {i}") for i in range(50)], max_rows=5))
    text = console.export_text()
    assert "name 4" in text and "name 5" not in text and "50 rows, first 5 shown" in text
    console.print(result_table([], max_rows=5))
    assert "0 rows" in console.export_text()
