"""Tests of the Python sandbox: verdicts, the benchmark formats, limits, lock-down, MBPP's references.

Hostile candidates are in test_adversarial.py.
"""

from __future__ import annotations

import collections
import json
import math
import re
import sys
import time
from pathlib import Path

import pytest

from codelutra.execution import python as sandbox
from codelutra.execution import python_data
from codelutra.execution.python import Isolation, PythonCheck, isolation, verify_python
from codelutra.execution.verdict import VERDICT_KINDS, Verdict
from tests.conftest import shared_dataset
from tests.python_fixtures import DS1000_CONTEXT, DS1000_FUNCTION_CONTEXT

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ("assert add(1, 2) == 3", "assert add(-1, 1) == 0")

# HumanEval: `test` defines check(candidate); the harness then calls check(<entry_point>).
HUMANEVAL_TEST = """
METADATA = {"author": "codelutra"}


def check(candidate):
    assert candidate(2, 3) == 5
    assert candidate(-2, 2) == 0
"""

# name: (check, expected kind, text the detail must contain)
CASES = {
    "correct": (PythonCheck(ADD, ADD_TESTS), "correct", ""),
    "wrong_result": (
        PythonCheck("def add(a, b):\n    return a - b\n", ADD_TESTS),
        "wrong_result",
        "test 1 failed: assert add(1, 2) == 3",
    ),
    "second_test_fails": (
        PythonCheck("def add(a, b):\n    return abs(a) + b\n", ADD_TESTS),
        "wrong_result",
        "test 2 failed: assert add(-1, 1) == 0",
    ),
    "assertion_message_quoted": (
        PythonCheck(ADD, ("assert add(1, 1) == 3, 'one and one'",)),
        "wrong_result",
        "(one and one)",
    ),
    "runtime_error_in_test": (
        PythonCheck("def add(a, b):\n    return a / 0\n", ADD_TESTS),
        "runtime_error",
        "ZeroDivisionError: division by zero (in test 1, at: return a / 0)",
    ),
    "runtime_error_in_candidate": (
        PythonCheck("import no_such_module\n" + ADD, ADD_TESTS),
        "runtime_error",
        "ModuleNotFoundError",
    ),
    "assert_in_candidate_is_not_a_wrong_result": (
        PythonCheck(ADD + "assert add(1, 1) == 3\n", ADD_TESTS),
        "runtime_error",
        "in the candidate",
    ),
    "error_in_test_code": (PythonCheck(ADD, ("assert ad(1, 2) == 3",)), "runtime_error", "NameError"),
    "syntax_error": (PythonCheck("def add(a, b) return a + b", ADD_TESTS), "syntax_error", "SyntaxError"),
    "null_byte": (PythonCheck("x = 1\0", ADD_TESTS), "syntax_error", ""),
    "memory": (PythonCheck("block = bytearray(10 ** 11)", ADD_TESTS), "memory", "MemoryError"),
    "memory_held_by_the_candidate": (
        PythonCheck("blocks = []\nwhile True:\n    blocks.append(bytearray(10 ** 8))", ADD_TESTS),
        "memory",
        "MemoryError (in the candidate)",
    ),
    "no_code_none": (PythonCheck(None, ADD_TESTS), "no_code", ""),
    "no_code_blank": (PythonCheck(" \n\t", ADD_TESTS), "no_code", ""),
    "no_tests_passes": (PythonCheck(ADD), "correct", ""),
    "main_block_not_run": (
        PythonCheck(ADD + "if __name__ == '__main__':\n    print(add(int(input()), 1))\n", ADD_TESTS),
        "correct",
        "",
    ),
    "printing_a_lot_still_passes": (
        PythonCheck(ADD + "for _ in range(20000):\n    print('x' * 50)\n", ADD_TESTS),
        "correct",
        "",
    ),
    "mbpp_setup_runs_after_candidate": (
        PythonCheck(
            "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
            "def total(pair):\n    return pair.a + pair.b\n",
            ("assert total(pair) == 7",),
            setup="pair = Pair(3, 4)",
        ),
        "correct",
        "",
    ),
    "humaneval_check": (PythonCheck(ADD, (HUMANEVAL_TEST,), entry_point="add"), "correct", ""),
    "humaneval_check_fails": (
        PythonCheck("def add(a, b):\n    return a * b\n", (HUMANEVAL_TEST,), entry_point="add"),
        "wrong_result",
        "check(add) failed: assert candidate(2, 3) == 5",
    ),
    "humaneval_candidate_raises_what_the_test_expects": (
        PythonCheck(
            "def add(a, b):\n    if a < 0:\n        raise ValueError('negative')\n    return a + b\n",
            (("def check(candidate):\n    try:\n        candidate(-1, 0)\n    except ValueError:\n        pass\n"
             "    else:\n        assert False\n"),),
            entry_point="add",
        ),
        "correct",
        "",
    ),
    "humaneval_missing_entry_point": (
        PythonCheck("def plus(a, b):\n    return a + b\n", (HUMANEVAL_TEST,), entry_point="add"),
        "runtime_error",
        "NameError",
    ),
    "ds1000_correct": (PythonCheck("result = a.sum()", code_context=DS1000_CONTEXT), "correct", ""),
    "ds1000_wrong_result": (
        PythonCheck("result = a.max()", code_context=DS1000_CONTEXT),
        "wrong_result",
        "test_execution failed",
    ),
    "ds1000_test_string_fails": (
        PythonCheck("result = np.add.reduce(a)", code_context=DS1000_CONTEXT),
        "wrong_result",
        "test_string failed",
    ),
    "ds1000_syntax_error": (PythonCheck("result = a.sum(", code_context=DS1000_CONTEXT), "syntax_error", ""),
    "ds1000_runtime_error": (
        PythonCheck("result = a.no_such_method()", code_context=DS1000_CONTEXT),
        "runtime_error",
        "AttributeError",
    ),
    "ds1000_function_body": (
        PythonCheck("    return sum(a)\n", code_context=DS1000_FUNCTION_CONTEXT),
        "correct",
        "",
    ),
    "ds1000_function_body_bad_indent": (
        PythonCheck("return sum(a)\n", code_context=DS1000_FUNCTION_CONTEXT),
        "syntax_error",
        "",
    ),
}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, Verdict]:
    checks = [check for check, _, _ in CASES.values()]
    return dict(zip(CASES, verify_python(checks, timeout_s=20, workers=2)))  # filling 2 GiB takes a busy core 10 s


@pytest.mark.parametrize("case", CASES)
def test_verdict(verdicts, case):
    _, kind, detail_part = CASES[case]
    verdict = verdicts[case]
    assert verdict.kind == kind, verdict
    assert detail_part in verdict.detail, verdict
    assert "\n" not in verdict.detail and len(verdict.detail) <= 200
    if kind == "correct":
        assert verdict.detail == ""
    if kind == "no_code":
        assert verdict.seconds == 0.0
    else:
        assert verdict.seconds > 0.0


def test_verdict_kinds_are_the_documented_ones(verdicts):
    kinds = {v.kind for v in verdicts.values()}
    assert kinds <= set(VERDICT_KINDS)
    assert kinds == set(VERDICT_KINDS) - {"timeout", "forbidden", "truncated"}  # the first two: below and in test_adversarial.py


def test_endless_loop_times_out():
    started = time.monotonic()
    [verdict] = verify_python([PythonCheck("while True:\n    pass\n", ADD_TESTS)], timeout_s=1)
    assert verdict.kind == "timeout" and "1 s time limit" in verdict.detail
    assert 1 <= verdict.seconds < 10 and time.monotonic() - started < 15


def test_output_flood_is_capped():
    """A candidate that prints without end is stopped by the file size limit, and little of it is read back."""
    flood = "import sys\nwhile True:\n    sys.stdout.write('spam' * 10000)\n"
    started = time.monotonic()
    [verdict] = verify_python([PythonCheck(flood, ADD_TESTS)], timeout_s=20)
    assert verdict.kind == "runtime_error" and "File too large" in verdict.detail, verdict
    assert time.monotonic() - started < 15


def test_crash_is_a_runtime_error_with_the_last_output_line():
    crash = "import ctypes\nprint('about to crash', flush=True)\nctypes.string_at(0)\n"
    [verdict] = verify_python([PythonCheck(crash, ADD_TESTS)], timeout_s=5)
    assert verdict.kind == "runtime_error", verdict
    assert "killed by SIGSEGV" in verdict.detail and "about to crash" in verdict.detail


def test_memory_limit_is_the_module_constant(monkeypatch):
    monkeypatch.setattr(sandbox, "MEMORY_LIMIT_BYTES", 512 * 1024**2)
    checks = [PythonCheck(f"block = bytearray({size})\n" + ADD, ADD_TESTS) for size in (100 * 1024**2, 600 * 1024**2)]
    assert [v.kind for v in verify_python(checks, workers=2)] == ["correct", "memory"]


def test_scratch_dir_is_the_working_dir_and_is_removed():
    where = "import os\nassert os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd()\n"
    where += "raise RuntimeError(os.getcwd())\n"
    [verdict] = verify_python([PythonCheck(where, ADD_TESTS)])
    cwd = Path(re.search(r"RuntimeError: (\S+)", verdict.detail).group(1))
    assert cwd.name == "scratch" and cwd.parent.name.startswith("codelutra-python-"), verdict
    assert not cwd.parent.exists()


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("PYTHONPATH", "/nowhere")
    candidate = ADD + "import os\nENVIRONMENT = dict(os.environ)\n"
    tests = (
        "assert 'SECRET_TOKEN' not in ENVIRONMENT and 'PYTHONPATH' not in ENVIRONMENT",
        "assert ENVIRONMENT['PYTHONHASHSEED'] == '0' and ENVIRONMENT['MPLBACKEND'] == 'Agg'",
        "assert hash('stable') == hash('stable')",
    )
    [verdict] = verify_python([PythonCheck(candidate, tests)])
    assert verdict.kind == "correct", verdict


def test_set_order_is_the_same_from_run_to_run():
    candidate = "ORDER = ''.join({'alpha', 'beta', 'gamma', 'delta', 'epsilon'})\nraise RuntimeError(ORDER)\n"
    first, second = verify_python([PythonCheck(candidate), PythonCheck(candidate)], workers=2)
    assert first.detail == second.detail


def test_lock_down_matches_what_isolation_reports():
    """The candidate checks from inside what `isolation()` claims (its own asserts); it passes only if every claim holds."""
    claims = isolation()
    assert claims.network in ("namespace", "guard") and claims.processes in ("pid namespace", "session")
    assert claims.filesystem in ("read-only", "permissions") and claims.user in (f"uid {sandbox.SANDBOX_UID}", "caller")
    assert sandbox.NETWORK_ISOLATION == claims.network
    tests = ["import os, resource, socket", "assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)"]
    tests.append("assert 'NoNewPrivs:\\t1' in open('/proc/self/status').read()")
    if claims.network == "namespace":
        tests.append("assert socket.if_nameindex() == [(1, 'lo')]")
    if claims.processes == "pid namespace":
        tests.append("assert os.getpid() == 1 and os.getppid() == 0")
    if claims.user != "caller":
        tests.append(f"assert os.getuid() == os.getgid() == {sandbox.SANDBOX_UID} and os.getgroups() == []")
        tests.append("assert 'CapEff:\\t0000000000000000' in open('/proc/self/status').read()")
        tests.append(f"assert resource.getrlimit(resource.RLIMIT_NPROC)[0] == {sandbox.PROCESS_LIMIT}")
    if claims.filesystem == "read-only":
        tests.append("assert os.statvfs('/').f_flag & os.ST_RDONLY and os.statvfs(sys.prefix).f_flag & os.ST_RDONLY")
        tests.append("assert not os.statvfs('.').f_flag & os.ST_RDONLY")
    [verdict] = verify_python([PythonCheck("import sys\n" + "\n".join(tests) + "\n" + ADD, ADD_TESTS)])
    assert verdict.kind == "correct", (claims, verdict)


def test_isolation_is_a_dataclass_with_notes():
    assert isinstance(isolation(), Isolation) and isinstance(isolation().notes, tuple)
    assert isolation() is isolation(sys.executable)  # probed once per interpreter


def test_a_sandbox_other_than_the_probed_one_is_an_error(monkeypatch):
    """A run must enforce exactly what `isolation()` said, or nothing is judged."""
    weakest = Isolation("guard", "permissions", "caller", "session")
    monkeypatch.setattr(sandbox, "isolation", lambda python=None: weakest)
    if sandbox._probe(sys.executable) == sandbox.isolation():
        pytest.skip("the sandbox here is the weakest one: nothing to tell apart")
    with pytest.raises(RuntimeError, match="Python sandbox setup failed: sandbox is"):
        verify_python([PythonCheck(ADD, ADD_TESTS)])


def test_progress_and_order():
    checks = [PythonCheck(ADD, (f"assert add({k}, 0) == {k if k % 3 else -1}",)) for k in range(8)]
    checks.append(PythonCheck(None))
    reported = []
    verdicts = verify_python(checks, workers=2, progress=reported.append)
    assert sum(reported) == 9
    assert [v.kind for v in verdicts] == ["wrong_result" if k % 3 == 0 else "correct" for k in range(8)] + ["no_code"]
    assert verify_python([]) == []


def test_each_distinct_program_runs_once(monkeypatch):
    ran = []
    verify_one = sandbox._verify_one

    def recording(check, *args):
        ran.append(check.candidate)
        return verify_one(check, *args)

    monkeypatch.setattr(sandbox, "_verify_one", recording)
    reformatted = "def add(a,b):\n    # the same function\n\n    return a+b"
    other_tests = ("assert add(2, 2) == 5",)
    checks = [PythonCheck(ADD, ADD_TESTS), PythonCheck(reformatted, ADD_TESTS), PythonCheck(ADD, other_tests), PythonCheck(ADD, ADD_TESTS)]
    verdicts = verify_python(checks, workers=2)
    assert [v.kind for v in verdicts] == ["correct", "correct", "wrong_result", "correct"]
    assert sorted(ran) == sorted([ADD, ADD])  # once with ADD_TESTS, once with other_tests


def test_another_interpreter(tmp_path):
    link = tmp_path / "python-link"
    link.symlink_to(sys.executable)
    [verdict] = verify_python([PythonCheck(ADD, ADD_TESTS)], python=str(link))
    assert verdict.kind == "correct", verdict
    with pytest.raises(RuntimeError, match="cannot start the Python sandbox"):
        verify_python([PythonCheck(ADD, ADD_TESTS)], python=str(tmp_path / "no-such-python"))


def test_mbpp_reference_solutions_pass():
    """All 474 in one batch (about 40 s on two busy cores). The data: ../shared/data/mbpp."""
    mbpp = shared_dataset("mbpp")
    problems = [json.loads(line) for line in (mbpp / "mbpp.jsonl").read_text().splitlines() if line.strip()]
    checks = [PythonCheck(p["code"], tuple(p["test_list"]), setup=p["test_setup_code"]) for p in problems]
    verdicts = verify_python(checks, timeout_s=20, workers=2)
    failures = [(p["task_id"], v) for p, v in zip(problems, verdicts) if v.kind != "correct"]
    assert len(problems) == 474 and failures == []


# ---------------------------------------------------------------------------------------------
# What crosses between the sandbox and the judge


def plain_values() -> list:
    values = [None, True, 7, 10**300, -0.0, math.inf, "a\nb", b"\x00\xff", bytearray(b"x"), [1, (2, 3)], {1: "a", (1, 2): {3}},
              frozenset({1}), 1 + 2j, int, str]
    numpy = pytest.importorskip("numpy")
    pandas = pytest.importorskip("pandas")
    values += [numpy.arange(6).reshape(2, 3), numpy.float64(0.5), numpy.int32(4), numpy.array(["ab", "c"]),
               numpy.array([1, "a", None], dtype=object), numpy.array(["2020-01-01"], dtype="datetime64[D]"),
               pandas.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=["p", "q"]),
               pandas.Series([1.5, None], name="s", dtype="Float64"),
               pandas.Series(pandas.Categorical(["b", "a", "b"], categories=["b", "a"], ordered=True)),
               pandas.DataFrame({"x": [1, 2]}, index=pandas.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["n", "m"])),
               pandas.Timestamp("2020-01-01 10:00", tz="Europe/Paris"), pandas.Timedelta("1 day"), pandas.NaT]
    return values


def same(received, sent) -> bool:
    import numpy
    import pandas

    if isinstance(sent, pandas.DataFrame):
        pandas.testing.assert_frame_equal(received, sent)
    elif isinstance(sent, pandas.Series):
        pandas.testing.assert_series_equal(received, sent)
    elif isinstance(sent, numpy.ndarray):
        numpy.testing.assert_array_equal(received, sent)
        assert received.dtype == sent.dtype
    else:
        assert received == sent or received is sent
    return type(received) is type(sent)


def test_plain_values_cross_unchanged():
    for value in plain_values():
        assert same(python_data.loads(python_data.dumps(value)), value), value
    assert math.isnan(python_data.loads(python_data.dumps(math.nan)))


def test_behaviour_does_not_cross():
    class AlwaysEqual(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    received = python_data.loads(python_data.dumps([AlwaysEqual(0), collections.Counter("aab")]))
    assert received == [0, {"a": 2, "b": 1}] and type(received[0]) is int and type(received[1]) is dict
    assert received[0] != 5
    for not_data in (object(), lambda: 1, iter([1]), sys):
        with pytest.raises(python_data.NotData):
            python_data.dumps([not_data])
    numpy = pytest.importorskip("numpy")
    with pytest.raises(python_data.NotData):
        python_data.dumps(numpy.zeros(2, dtype=[("a", "i4")]))
    nested = []
    for _ in range(200):
        nested = [nested]
    with pytest.raises(python_data.NotData):
        python_data.dumps(nested)


@pytest.mark.parametrize(
    "forged",
    [
        '{"t": "ref", "v": 0}',  # a reference where the sender holds none
        '{"t": "type", "v": "eval"}',  # only builtin data types may be named
        '{"t": "ndarray", "v": {"dtype": "O", "shape": [1], "data": "AAAAAAAAAAA="}}',  # object pointers
        '{"t": "ndarray", "v": {"dtype": "<i8", "shape": [3], "data": "AAAAAAAAAAA="}}',  # too few bytes
        '{"t": "dict", "v": [[[1], 2]]}',  # an unhashable key
        '{"t": "object", "v": "__import__(\'os\')"}',
        '{"__class__": "x"}',
    ],
)
def test_forged_encodings_are_not_data(forged):
    with pytest.raises(python_data.NotData):
        python_data.loads(forged)


def test_objects_of_the_candidate_are_reached_through_the_sandbox():
    """MBPP's trees: the setup builds the candidate's objects, the tests pass them back and read their attributes."""
    node = "class Node:\n    def __init__(self, value):\n        self.value, self.left = value, None\n"
    node += "def depth(n):\n    return 0 if n is None else 1 + depth(n.left)\n"
    setup = "root = Node(1)\nroot.left = Node(2)"
    checks = [
        PythonCheck(node, ("assert depth(root) == 2", "assert root.left.value == 2"), setup=setup),
        PythonCheck(node, ("assert Node(1) == Node(1)",)),  # an object is not a value: it cannot be compared
        PythonCheck(node, ("assert {Node(1)}",)),  # nor hashed
        # Its truth, length and items are values the sandbox works out, as if the candidate had returned them.
        PythonCheck("def gen(n):\n    yield from range(n)\n", ("assert list(gen(3)) == [0, 1, 2] and gen(0)",)),
    ]
    tree, compared, hashed, generator = verify_python(checks, workers=2)
    assert tree.kind == generator.kind == "correct", (tree, generator)
    assert compared.kind == hashed.kind == "runtime_error", (compared, hashed)
    assert "cannot be compared" in compared.detail
