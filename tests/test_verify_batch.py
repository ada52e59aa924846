"""Tests of `verify_jsonl` (`codelutra verify`): one verdict per input line, in order, whatever the line holds."""

from __future__ import annotations

import json
import sqlite3

import pytest

from codelutra.artifacts import read_jsonl
from codelutra.cli import main
from codelutra.errors import UserError
from codelutra.execution.batch import INVALID, verify_jsonl
from codelutra.execution.verdict import VERDICT_KINDS

ADD = "def add(a, b):\n    return a + b\n"
DS1000_CONTEXT = '''
exec_context = r"""
values = test_input
[insert]
"""


def test_execution(solution: str):
    env = {"test_input": [1, 2, 3]}
    exec(exec_context.replace("[insert]", solution), env)
    assert env["result"] == 6
'''

# HumanEval's shape: the prompt (a signature and docstring) is the program's start, the candidate its completion.
HUMANEVAL = {
    "task": "python",
    "preamble": 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """The sum of xs."""\n',
    "entry_point": "total",
    "tests": ["def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n"],
}


@pytest.fixture
def db(tmp_path) -> str:
    path = tmp_path / "singers.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE singer (name TEXT, age INTEGER); INSERT INTO singer VALUES ('Ann', 30), ('Bob', 25);"
        )
    conn.close()
    return str(path)


def write_lines(path, lines: list) -> None:
    """Objects become JSON lines; strings are written as they are (to make malformed lines)."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def test_mixed_batch_gives_one_verdict_per_line_in_order(tmp_path, db):
    sql = {"task": "sql", "db": db, "gold": "SELECT name FROM singer WHERE age > 26"}
    python = {"task": "python", "tests": ["assert add(1, 2) == 3"]}
    ds1000 = {"task": "ds1000", "code_context": DS1000_CONTEXT}
    # (input line, expected verdict, text the detail must contain)
    cases = [
        ({**sql, "id": "sql-right", "candidate": "SELECT name FROM singer WHERE age >= 27"}, "correct", ""),
        ({**sql, "id": "sql-wrong", "candidate": "SELECT name FROM singer"}, "wrong_result", "expected 1 rows"),
        ({**sql, "id": "sql-drop", "candidate": "DROP TABLE singer"}, "forbidden", "forbidden:"),
        ({**sql, "id": "sql-none", "candidate": None}, "no_code", ""),
        ({**python, "id": 1, "candidate": ADD}, "correct", ""),
        ({**python, "id": 2, "candidate": ADD.replace("+", "-")}, "wrong_result", "test 1 failed"),
        ("", None, None),  # blank lines are skipped
        ({**python, "id": 3, "candidate": "while True:\n    pass\n"}, "timeout", "time limit"),
        ({**python, "id": 4, "candidate": "import os\nos.system('rm -rf /')\n"}, "forbidden", "shell"),
        (
            {"id": 5, "task": "python", "candidate": "class Box:\n    pass\n", "tests": ["assert box.x == 1"],
             "setup": "box = Box(); box.x = 1", "entry_point": None},
            "correct",
            "",
        ),
        (
            {"id": 6, "task": "python", "candidate": ADD, "entry_point": "add",
             "tests": ["def check(candidate):\n    assert candidate(2, 2) == 4\n"]},
            "correct",
            "",
        ),
        ({**ds1000, "id": "ds-right", "candidate": "result = sum(values)"}, "correct", ""),
        ({**ds1000, "id": "ds-wrong", "candidate": "result = max(values)"}, "wrong_result", "test_execution failed"),
        ({**ds1000, "id": "ds-none", "candidate": None}, "no_code", ""),
        ('{"id": 7, "task": "sql", ', INVALID, "line 15: not valid JSON"),
        ("[1, 2, 3]", INVALID, "line 16: not a JSON object"),
        ({**sql, "candidate": "SELECT 1"}, INVALID, "line 17: missing field 'id'"),
        ({"id": 8, "task": "rust", "candidate": "fn main() {}"}, INVALID, "'task' must be one of sql, python, ds1000"),
        ({"id": 9, "task": "python", "candidate": ADD}, INVALID, "missing field 'tests'"),
        ({**python, "id": 10, "candidate": ADD, "tests": "assert add(1, 2) == 3"}, INVALID, "'tests' must be a list"),
        ({**sql, "id": 11, "db": 42, "candidate": "SELECT 1"}, INVALID, "field 'db' must be a string"),
        ({"id": 12, "task": "ds1000", "candidate": "result = 6"}, INVALID, "missing field 'code_context'"),
        ({**sql, "id": 13}, INVALID, "missing field 'candidate'"),
        ({**python, "id": 14, "candidate": ADD, "setup": 3}, INVALID, "field 'setup' must be a string"),
        ({**HUMANEVAL, "id": 15, "candidate": "    return sum(xs)\n"}, "correct", ""),  # a completion after its prompt
        ({**HUMANEVAL, "id": 16, "candidate": "    return sum(xs)\n", "preamble": None}, "syntax_error", ""),
        ({**HUMANEVAL, "id": 17, "candidate": "    return max(xs)\n"}, "wrong_result", "check(total) failed"),
    ]
    in_path, out_path = tmp_path / "candidates.jsonl", tmp_path / "out" / "verdicts.jsonl"
    write_lines(in_path, [line for line, _, _ in cases])
    cases = [case for case in cases if case[1] is not None]

    counts = verify_jsonl(in_path, out_path, timeout_s=2, workers=2)

    rows = read_jsonl(out_path)
    assert len(rows) == len(cases)
    for row, (line, verdict, detail_part) in zip(rows, cases):
        assert row["id"] == (line.get("id") if isinstance(line, dict) else None)
        assert row["verdict"] == verdict, row
        assert detail_part in row["detail"], row
        assert set(row) == {"id", "verdict", "detail", "seconds"} and row["seconds"] >= 0
    assert list(counts) == [*VERDICT_KINDS, INVALID]
    assert counts == {kind: sum(verdict == kind for _, verdict, _ in cases) for kind in counts}


def test_a_file_without_candidates_is_a_user_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="no candidates"):
        verify_jsonl(tmp_path / "empty.jsonl", tmp_path / "verdicts.jsonl")
    assert not (tmp_path / "verdicts.jsonl").exists()


def test_unreadable_input_is_a_user_error(tmp_path):
    for path in (tmp_path / "missing.jsonl", tmp_path):
        with pytest.raises(UserError, match=str(path)):
            verify_jsonl(path, tmp_path / "verdicts.jsonl")
    assert not (tmp_path / "verdicts.jsonl").exists()


def test_unknown_interpreter_is_one_line_and_exit_2(tmp_path, capsys):
    write_lines(tmp_path / "candidates.jsonl", [{"id": 1, "task": "python", "candidate": ADD, "tests": []}])
    missing_python = str(tmp_path / "no-such-python")
    assert main(["verify", str(tmp_path / "candidates.jsonl"), "--out", str(tmp_path / "v.jsonl"), "--python", missing_python]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--python" in err and "no-such-python" in err
    assert not (tmp_path / "v.jsonl").exists()


def test_command_line(tmp_path, capsys):
    candidates, out = tmp_path / "candidates.jsonl", tmp_path / "verdicts.jsonl"
    write_lines(candidates, [{"id": 1, "task": "python", "candidate": ADD, "tests": ["assert add(2, 2) == 4"]}])
    assert main(["verify", str(candidates), "--out", str(out), "--timeout", "5", "--workers", "1"]) == 0
    assert [row["verdict"] for row in read_jsonl(out)] == ["correct"]
    assert main(["verify", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "other.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
