"""Loading Python task sets (MBPP, sanitized MBPP, HumanEval, DS-1000): layouts, prompts, bad records, checks."""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

from codelutra.config import PromptConfig, TaskSource, VerifyConfig
from codelutra.errors import UserError
from codelutra.execution.python import PythonCheck
from codelutra.tasks.kinds import PYTHON, SQL
from codelutra.tasks.python import detect_format, load_python_tasks
from codelutra.tasks.sources import load_tasks
from tests.conftest import shared_dataset
from tests.python_fixtures import (
    HUMANEVAL,
    MBPP_TRAIN,
    MBPP_VALIDATION,
    MBPP_WITH_SETUP,
    ds1000_record,
    mbpp_record,
    write_jsonl,
)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- MBPP ------------------------------------------------------------------------------------------


def test_mbpp_jsonl(tmp_path):
    file = write_jsonl(tmp_path / "mbpp.jsonl", [*MBPP_TRAIN, MBPP_WITH_SETUP])
    tasks, skipped = load_tasks(TaskSource(path=str(file)))
    assert skipped == []
    assert [t.id for t in tasks] == ["601", "602", "603", "604", "605", "606", "607"]
    first = tasks[0]
    assert first.kind == "python" and first.db_id == "train"
    assert first.gold == "def double(x):\n    return 2 * x"  # Windows line ends and trailing blanks gone
    assert first.tests == ("assert double(1) == 2", "assert double(3) == 6")
    assert first.question == (
        "Write a function double as the tests show.\nYour code should pass these tests:\n"
        "assert double(1) == 2\nassert double(3) == 6"
    )
    assert tasks[-1].setup == "box = Box(3)"  # kept: the gold solution passed with it run after itself


def test_mbpp_prompt_shows_problem_tests_and_instruction(tmp_path):
    [task], _ = load_tasks(TaskSource(path=str(write_jsonl(tmp_path / "m.jsonl", MBPP_TRAIN[:1]))))
    [message] = PYTHON.messages(task, PromptConfig())
    assert message["role"] == "user"
    assert message["content"] == task.question + "\nAnswer with Python code in a ```python code block and nothing else."
    assert PYTHON.answer(task.gold) == "```python\ndef double(x):\n    return 2 * x\n```"


def test_mbpp_splits_select_disjoint_sets(tmp_path):
    file = str(write_jsonl(tmp_path / "mbpp.jsonl", [*MBPP_VALIDATION, *MBPP_TRAIN]))
    train, _ = load_tasks(TaskSource(path=file, databases=["train"], limit=4))
    heldout, _ = load_tasks(TaskSource(path=file, exclude_databases=["train"]))
    assert len(train) == 4 and {t.db_id for t in train} == {"train"}
    assert [t.id for t in heldout] == ["511", "512", "513"]
    with pytest.raises(UserError, match="no problem is on the databases asked for"):
        load_tasks(TaskSource(path=file, databases=["test"]))


def test_sanitized_mbpp_json_list(tmp_path):
    record = {
        "source_file": "x",
        "task_id": 605,
        "prompt": "Write a function root returning the square root.",
        "code": "def root(x):\n    return math.sqrt(x)",
        "test_imports": ["import math"],
        "test_list": ["assert root(4) == 2"],
    }
    file = tmp_path / "sanitized-mbpp.json"
    file.write_text(json.dumps([record]))
    [task], skipped = load_tasks(TaskSource(path=str(tmp_path)))  # a directory: found by its file name
    assert skipped == [] and task.id == "605"
    assert task.question.startswith("Write a function root returning the square root.\n")
    assert task.setup == "import math"


def test_mbpp_bad_records_are_reported_by_file_record_and_field(tmp_path):
    no_tests = mbpp_record(610, "f", "return x", [])
    bad_code = {**mbpp_record(611, "g", "return x", [("1", "1")]), "code": 5}
    no_id = {k: v for k, v in MBPP_TRAIN[0].items() if k != "task_id"}
    wrong_gold = mbpp_record(612, "h", "return x + 1", [("1", "1")])
    file = write_jsonl(tmp_path / "mbpp.jsonl", [*MBPP_TRAIN[:2], no_tests, bad_code, no_id, "[1]", wrong_gold, MBPP_TRAIN[0]])
    tasks, skipped = load_tasks(TaskSource(path=str(file)))
    assert [t.id for t in tasks] == ["601", "602"]
    reasons = {s.id: s.reason for s in skipped}
    assert reasons == {
        "610": "line 3: field 'test_list' is empty",
        "611": "line 4: field 'code' is not a string",
        "line 5": "line 5: missing field 'task_id'",
        "line 6": "line 6: record is not a JSON object but list",
        "612": reasons["612"],
        "601": "line 8: duplicate id, first used on line 1",
    }
    assert reasons["612"].startswith("gold code fails: wrong_result: test 1 failed: assert h(1) == 1")
    assert all(s.file == str(file) for s in skipped)
    assert str(skipped[0]) == f"{file}: problem 610: line 3: field 'test_list' is empty"


def test_undecodable_line_and_empty_set_are_one_line_errors(tmp_path):
    with pytest.raises(UserError) as e:
        load_tasks(TaskSource(path=str(write_jsonl(tmp_path / "a.jsonl", [MBPP_TRAIN[0], "{nope"])), format="mbpp"))
    assert one_line(e).endswith("a.jsonl: line 2: invalid JSON: Expecting property name enclosed in double quotes")
    with pytest.raises(UserError) as e:
        load_tasks(TaskSource(path=str(write_jsonl(tmp_path / "b.jsonl", [mbpp_record(601, "f", "return x", [])])), format="mbpp"))
    assert "no task left: skipped 1, the first because: line 1: field 'test_list' is empty" in one_line(e)
    with pytest.raises(UserError, match="no mbpp file found"):
        load_tasks(TaskSource(path=str(tmp_path), format="mbpp"))


# --- HumanEval -------------------------------------------------------------------------------------


def test_humaneval_layout(tmp_path):
    file = write_jsonl(tmp_path / "humaneval.jsonl", HUMANEVAL)
    tasks, skipped = load_tasks(TaskSource(path=str(file)))
    assert skipped == [] and [t.id for t in tasks] == ["Fixture/0", "Fixture/1"]
    add = tasks[0]
    assert add.entry_point == "add" and add.tests == (HUMANEVAL[0]["test"].strip(),)
    assert add.gold == HUMANEVAL[0]["prompt"] + HUMANEVAL[0]["canonical_solution"].rstrip()
    assert add.question.startswith("Complete this Python function:\n```python\ndef add(a: int, b: int) -> int:")
    assert tasks[1].gold.startswith("from typing import List\n")


def test_humaneval_is_judged_by_check_of_the_entry_point(tmp_path):
    bad_entry = {**HUMANEVAL[0], "task_id": "Fixture/2", "entry_point": "add; import os"}
    wrong_test = {**HUMANEVAL[1], "task_id": "Fixture/3", "test": "def check(candidate):\n    assert candidate([1]) == 2\n"}
    tasks, skipped = load_tasks(TaskSource(path=str(write_jsonl(tmp_path / "h.jsonl", [*HUMANEVAL, bad_entry, wrong_test]))))
    assert [t.id for t in tasks] == ["Fixture/0", "Fixture/1"]
    assert skipped[0].reason == "line 3: field 'entry_point' is not a function name: 'add; import os'"
    assert skipped[1].reason.startswith("gold code fails: wrong_result: check(total) failed")


# HumanEval's own shapes (HumanEval/0, 10 and 38, abridged): an import the signature needs, and helper
# functions that the prompt defines and the answer or the test calls.
HUMANEVAL_SHAPES = [
    {
        "task_id": "HumanEval/0",
        "prompt": 'from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n'
                  '    """ Check if in given list of numbers, are any two numbers closer to each other than\n'
                  '    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    """\n',
        "canonical_solution": "    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n"
                              "            if idx != idx2 and abs(elem - elem2) < threshold:\n                return True\n"
                              "    return False\n",
        "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n"
                "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
                "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n",
        "entry_point": "has_close_elements",
    },
    {
        "task_id": "HumanEval/10",
        "prompt": 'def is_palindrome(string: str) -> bool:\n    """ Test if given string is a palindrome """\n'
                  '    return string == string[::-1]\n\n\ndef make_palindrome(string: str) -> str:\n'
                  '    """ Find the shortest palindrome that begins with a supplied string.\n'
                  "    >>> make_palindrome('cat')\n    'catac'\n    \"\"\"\n",
        "canonical_solution": "    if not string:\n        return ''\n    beginning_of_suffix = 0\n"
                              "    while not is_palindrome(string[beginning_of_suffix:]):\n"
                              "        beginning_of_suffix += 1\n"
                              "    return string + string[:beginning_of_suffix][::-1]\n",
        "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate('') == ''\n"
                "    assert candidate('xyz') == 'xyzyx'\n    assert candidate('jerry') == 'jerryrrej'\n",
        "entry_point": "make_palindrome",
    },
    {
        "task_id": "HumanEval/38",
        "prompt": 'def encode_cyclic(s: str):\n    """\n    returns encoded string by cycling groups of three characters.\n'
                  '    """\n    groups = [s[(3 * i):min((3 * i + 3), len(s))] for i in range((len(s) + 2) // 3)]\n'
                  '    groups = [(group[1:] + group[0]) if len(group) == 3 else group for group in groups]\n'
                  '    return "".join(groups)\n\n\ndef decode_cyclic(s: str):\n    """\n'
                  '    takes as input string encoded with encode_cyclic function. Returns decoded string.\n    """\n',
        "canonical_solution": "    return encode_cyclic(encode_cyclic(s))\n",
        "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    from random import randint, choice\n    import string\n\n"
                "    letters = string.ascii_lowercase\n    for _ in range(10):\n"
                "        str = ''.join(choice(letters) for i in range(randint(10, 20)))\n"
                "        encoded_str = encode_cyclic(str)\n        assert candidate(encoded_str) == str\n",
        "entry_point": "decode_cyclic",
    },
]
# Chat answers as models write them: the whole function again, without the prompt's import or helpers.
CHAT_ANSWERS = {
    "HumanEval/0": "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
                   "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n",
    "HumanEval/10": "def make_palindrome(string: str) -> str:\n    for start in range(len(string)):\n"
                    "        if is_palindrome(string[start:]):\n            return string + string[:start][::-1]\n"
                    "    return string\n",
    "HumanEval/38": "def decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n",
}


def test_humaneval_is_scored_as_its_official_harness_scores_it(tmp_path):
    """The program is prompt + answer + test + check(entry_point), so the prompt's imports and helpers are in scope."""
    tasks, skipped = load_tasks(TaskSource(path=str(write_jsonl(tmp_path / "HumanEval.jsonl", HUMANEVAL_SHAPES))))
    assert skipped == [] and [t.id for t in tasks] == list(CHAT_ANSWERS)
    by_id = {task.id: task for task in tasks}
    cases = [(by_id[name], answer, "correct") for name, answer in CHAT_ANSWERS.items()]
    cases += [
        (by_id["HumanEval/0"], HUMANEVAL_SHAPES[0]["canonical_solution"], "correct"),  # a completion: only the body
        (by_id["HumanEval/10"], "def make_palindrome(string: str) -> str:\n    return string\n", "wrong_result"),
        (by_id["HumanEval/38"], "def decode(s: str):\n    return s\n", "wrong_result"),  # the prompt's stub: None
        (by_id["HumanEval/0"], "def has_close_elements(numbers, threshold):\n    return undefined_name\n", "runtime_error"),
    ]
    verdicts = PYTHON.verify([PYTHON.check(task, answer) for task, answer, _ in cases], VerifyConfig(workers=2), None)
    assert [(task.id, v.kind) for (task, _, _), v in zip(cases, verdicts)] == [(t.id, kind) for t, _, kind in cases], verdicts
    without_the_prompt = [PythonCheck(answer, tests=by_id[name].tests, entry_point=by_id[name].entry_point)
                          for name, answer in CHAT_ANSWERS.items()]
    verdicts = PYTHON.verify(without_the_prompt, VerifyConfig(workers=2), None)
    assert [v.kind for v in verdicts] == ["runtime_error"] * 3 and all("NameError" in v.detail for v in verdicts), verdicts


# --- DS-1000 ---------------------------------------------------------------------------------------


def test_ds1000_layout_prompt_and_groups(tmp_path):
    function_body = ds1000_record(3, reference="    return a.sum()")
    records = [ds1000_record(1), ds1000_record(2, reference="result = a.max()"), {**ds1000_record(4), "metadata": {"library": "Numpy"}}]
    file = write_jsonl(tmp_path / "ds1000.jsonl", [*records, function_body])
    tasks, skipped = load_python_tasks(file, format="ds1000", check_gold=False)
    assert [t.id for t in tasks] == ["1", "2", "3"] and {t.db_id for t in tasks} == {"Numpy"}
    assert skipped[0].id == "line 3" and skipped[0].reason == "line 3: metadata: missing field 'problem_id'"
    assert tasks[0].question.endswith("BEGIN SOLUTION")  # the completion model's opening <code> tag is gone
    assert tasks[2].gold == "    return a.sum()"  # a function body keeps its indentation
    assert "test_execution" in tasks[0].code_context


def test_ds1000_failing_gold_and_unimportable_library_are_skipped_with_the_interpreter_named(tmp_path):
    interpreter = tmp_path / "env" / "bin" / "python"
    interpreter.parent.mkdir(parents=True)
    interpreter.symlink_to(sys.executable)
    records = [ds1000_record(1), ds1000_record(2, reference="result = a.max()"), ds1000_record(3, library="Nosuchlib")]
    file = write_jsonl(tmp_path / "ds1000.jsonl", records)
    tasks, skipped = load_tasks(TaskSource(path=str(file)), VerifyConfig(python=str(interpreter)))
    assert [t.id for t in tasks] == ["1"]
    reasons = {s.id: s.reason for s in skipped}
    assert reasons["2"].startswith("gold code fails: wrong_result: test_execution failed")
    assert reasons["3"].startswith(f"library Nosuchlib is not importable with {interpreter}: ModuleNotFoundError")


# --- detection and kinds ---------------------------------------------------------------------------


def test_auto_detection_by_first_record_and_directory(tmp_path):
    assert detect_format(write_jsonl(tmp_path / "m.jsonl", MBPP_TRAIN)) == "mbpp"
    assert detect_format(write_jsonl(tmp_path / "h.jsonl", HUMANEVAL)) == "humaneval"
    assert detect_format(write_jsonl(tmp_path / "d.jsonl", [ds1000_record(1)])) == "ds1000"
    assert detect_format(write_jsonl(tmp_path / "s.jsonl", [{"question": "q", "gold_sql": "SELECT 1", "db_path": "x"}])) is None
    (tmp_path / "ds").mkdir()
    write_jsonl(tmp_path / "ds" / "ds1000.jsonl", [ds1000_record(1)])
    assert detect_format(tmp_path / "ds") == "ds1000"
    assert detect_format(tmp_path / "nothing-here") is None


def test_sql_sources_keep_the_sql_kind():
    tasks, _ = load_tasks(TaskSource(path="builtin:heldout", limit=2))
    assert tasks.kind is SQL and all(t.kind == "sql" for t in tasks)


def test_mbpp_format_on_a_sql_file_reports_the_fields(tmp_path):
    file = write_jsonl(tmp_path / "q.jsonl", [{"question": "q", "gold_sql": "SELECT 1", "db_path": "x"}])
    with pytest.raises(UserError) as e:
        load_tasks(TaskSource(path=str(file), format="mbpp"))
    assert "line 1: missing field 'task_id'" in one_line(e)


# --- the shared data -------------------------------------------------------------------------------


def test_shared_mbpp_loads_with_its_splits():
    mbpp = shared_dataset("mbpp")
    tasks, skipped = load_python_tasks(mbpp, format="mbpp", check_gold=False)
    assert skipped == [] and len(tasks) == 474
    assert Counter(t.db_id for t in tasks) == {"prompt": 10, "validation": 90, "train": 374}
    sanitized, skipped = load_python_tasks(mbpp / "sanitized-mbpp.json", format="mbpp", check_gold=False)
    assert skipped == [] and len(sanitized) == 170
    with_setup = [t for t in tasks if t.setup]
    assert with_setup and all("\r" not in t.setup + t.gold for t in tasks)


def test_shared_mbpp_sample_passes_its_gold_check():
    mbpp = shared_dataset("mbpp")
    tasks, skipped = load_tasks(TaskSource(path=str(mbpp), databases=["validation"], limit=8, seed=3))
    assert len(tasks) == 8 and skipped == []


def test_shared_ds1000_loads_every_record():
    ds1000 = shared_dataset("ds1000")
    tasks, skipped = load_python_tasks(ds1000, format="ds1000", check_gold=False)
    assert skipped == [] and len(tasks) == 483
    assert set(Counter(t.db_id for t in tasks)) == {"Pandas", "Numpy", "Matplotlib", "Scipy", "Sklearn", "Pytorch", "Tensorflow"}
    assert all(t.code_context and "[insert]" in t.code_context for t in tasks)


def test_shared_ds1000_numpy_sample_runs_in_the_sandbox():
    pytest.importorskip("numpy")
    ds1000 = shared_dataset("ds1000")
    tasks, skipped = load_tasks(TaskSource(path=str(ds1000), databases=["Numpy"], limit=4), VerifyConfig(timeout_s=20))
    assert len(tasks) + len(skipped) == 4 and tasks
    assert all(s.reason.startswith("gold code fails") for s in skipped)


def test_mbpp_config_trains_and_evaluates_on_disjoint_problems():
    from pathlib import Path

    from codelutra.config import load_config

    shared_dataset("mbpp")
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "mbpp.yaml")
    chosen = []
    for source in (cfg.train_tasks, cfg.eval_tasks):
        selection = source.model_dump(include={"databases", "exclude_databases", "limit", "seed"})
        tasks, _ = load_python_tasks(root / source.path, format="mbpp", check_gold=False, **selection)
        chosen.append({t.id for t in tasks})
    assert [len(ids) for ids in chosen] == [100, 60] and not chosen[0] & chosen[1]
