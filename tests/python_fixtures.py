"""Small Python task sets in each published layout, written by hand for the tests (no benchmark data)."""

from __future__ import annotations

import json
from pathlib import Path


def mbpp_record(task_id: int, name: str, body: str, cases: list[tuple[str, str]], text: str = "", **extra) -> dict:
    """An MBPP record for a one-argument function `name`; `cases` are (argument, expected) source pairs."""
    return {
        "task_id": task_id,
        "text": text or f"Write a function {name} as the tests show.",
        "code": f"def {name}(x):\r\n    {body}\r\n",
        "test_list": [f"assert {name}({arg}) == {expected}" for arg, expected in cases],
        "test_setup_code": "",
        "challenge_test_list": [],
        **extra,
    }


MBPP_TRAIN = [
    mbpp_record(601, "double", "return 2 * x", [("1", "2"), ("3", "6")]),
    mbpp_record(602, "square", "return x * x", [("2", "4"), ("3", "9")]),
    mbpp_record(603, "negate", "return -x", [("1", "-1"), ("-2", "2")]),
    mbpp_record(604, "first", "return x[0]", [("[1, 2]", "1"), ("'ab'", "'a'")]),
    mbpp_record(605, "last", "return x[-1]", [("[1, 2]", "2"), ("'ab'", "'b'")]),
    mbpp_record(606, "length", "return len(x)", [("[1, 2]", "2"), ("''", "0")]),
]
MBPP_VALIDATION = [
    mbpp_record(511, "halve", "return x / 2", [("4", "2"), ("1", "0.5")]),
    mbpp_record(512, "is_even", "return x % 2 == 0", [("4", "True"), ("3", "False")]),
    mbpp_record(513, "reverse", "return x[::-1]", [("'ab'", "'ba'"), ("[1, 2]", "[2, 1]")]),
]
# Setup code that uses a class the solution defines: it must run after the solution.
MBPP_WITH_SETUP = {
    "task_id": 607,
    "text": "Write a class Box holding a value and a function unbox returning it.",
    "code": "class Box:\n    def __init__(self, v):\n        self.v = v\n\ndef unbox(b):\n    return b.v\n",
    "test_list": ["assert unbox(box) == 3"],
    "test_setup_code": "box = Box(3)",
    "challenge_test_list": [],
}

HUMANEVAL = [
    {
        "task_id": "Fixture/0",
        "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b.\n    >>> add(2, 3)\n    5\n    """\n',
        "canonical_solution": "    return a + b\n",
        "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
        "entry_point": "add",
    },
    {
        "task_id": "Fixture/1",
        "prompt": "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    \"\"\"Sum of xs.\"\"\"\n",
        "canonical_solution": "    return sum(xs)\n",
        "test": "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n",
        "entry_point": "total",
    },
]

# DS-1000: code_context defines test_execution(solution) (and here test_string); the solution
# replaces [insert] in exec_context.
DS1000_CONTEXT = '''
import numpy as np

exec_context = r"""
import numpy as np
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for test_input, expected in (([1, 2, 3], 6), ([4], 4)):
        env = {"test_input": np.array(test_input)}
        exec(code, env)
        assert env["result"] == expected


def test_string(solution: str):
    assert "sum" in solution
'''
# Some DS-1000 problems insert the solution as a function body.
DS1000_FUNCTION_CONTEXT = '''
exec_context = r"""
def f(a):
[insert]
result = f(test_input)
"""


def test_execution(solution: str):
    env = {"test_input": [1, 2, 3]}
    exec(exec_context.replace("[insert]", solution), env)
    assert env["result"] == 6
'''


def ds1000_record(problem_id: int, reference: str = "result = a.sum()", library: str = "Numpy") -> dict:
    return {
        "prompt": "Problem:\nHow do I sum the array a?\nA:\n<code>\nimport numpy as np\na = np.array([1, 2, 3])\n</code>\n"
        "result = ... # put solution in this variable\nBEGIN SOLUTION\n<code>\n",
        "reference_code": reference,
        "code_context": DS1000_CONTEXT,
        "metadata": {"problem_id": problem_id, "library": library, "test_case_cnt": 2, "perturbation_type": "Origin"},
    }


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path
