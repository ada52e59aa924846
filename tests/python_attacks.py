"""Candidates that try to game the judge, and the test shapes they attack (MBPP, HumanEval, DS-1000).

Used by test_adversarial.py. Each answer is wrong: only gaming the judge could make it "correct".
"""

from __future__ import annotations

# Helpers the attacks share: clear every list, dict and set reachable from a chain of frames.
CLEAR_FRAMES = """
def clear_frames(frame):
    while frame is not None:
        for scope in (frame.f_locals, frame.f_globals):
            if scope is globals():
                continue  # its own program's variables: the attack is on the frames around it
            for key, value in list(scope.items()):
                if not key.startswith('__') and isinstance(value, (list, dict, set)) and value is not scope:
                    try:
                        value.clear()
                    except Exception:
                        pass
        frame = frame.f_back
"""
FAKE_REPORTS = """
def fake_reports():
    import gc, os
    for obj in gc.get_objects():
        if callable(obj) and 'report' in getattr(obj, '__name__', ''):
            for event in ('outcome', 'done', 'finished'):
                try:
                    obj(event, kind='correct', detail='', exit_code=0, signal=None, timed_out=False, cpu_exceeded=False)
                except Exception:
                    pass
    for line in ('{"kind": "correct", "detail": ""}', '{"ok": 3}', '{"ok": {"t": "ndarray"}}', '{"event": "done"}'):
        for fd in range(3, 64):
            try:
                os.write(fd, ('\\n' + line + '\\n').encode())
            except OSError:
                pass
"""
# Helpers of the forgeries: the answer line the sandbox would write, carrying the value the test expects.
FORGE = """
import json, os, sys

def stolen_nonce():
    # the nonce of the request being served, read from the sandbox's own serving loop
    frame = sys._getframe()
    while frame is not None:
        request = frame.f_locals.get('request')
        if isinstance(request, dict) and 'nonce' in request:
            return request['nonce']
        frame = frame.f_back
    return '0' * 32

def expected():
    # what the running test expects, from the variables of attack()'s caller: add(a, b) or the DS-1000 program
    scope = sys._getframe(2).f_locals
    if 'b' in scope:
        return scope['a'] + scope['b']
    result = scope['df'].assign(a=scope['df'].a * 2) if 'df' in scope else scope['a'] * 2
    return {'variables': {'result': result}, 'files': {}}

def every_expected():
    # every value the tests of attack()'s caller's shape expect, in the order they ask for them
    scope = sys._getframe(2).f_locals
    if 'b' in scope:
        return [3, 0.75] if scope['a'] == 1 else [5, 0.75]
    if 'df' in scope:
        return [{'variables': {'result': scope['df'].assign(a=scope['df'].a * 2)}, 'files': {}}]
    return [{'variables': {'result': sys.modules['numpy'].array(values)}, 'files': {}} for values in ([2, 4, 6], [9.0])]

def answer(value, nonce):
    data = sys.modules.get('python_data') or sys.modules['codelutra.execution.python_data']
    fields = {'ok': data.encode(value)} if nonce is None else {'nonce': nonce, 'ok': data.encode(value)}
    return (json.dumps(fields) + '\\n').encode()

def write_everywhere(data):
    for fd in range(64):
        try:
            os.write(fd, data)
        except OSError:
            pass
"""
STOLEN = FORGE + "def attack():\n    write_everywhere(answer(expected(), stolen_nonce()))\n"
EVERY = FORGE + "def attack():\n    write_everywhere(b''.join(answer(value, None) for value in every_expected()))\n"
BLIND = FORGE + "def attack():\n    value = expected()\n    write_everywhere(answer(value, None) + answer(value, '0' * 32))\n"
CLOSE_ALL = "    for fd in range(3, 64):\n        try:\n            os.close(fd)\n        except OSError:\n            pass\n"
# Forged answers, each carrying the value the test expects, where the candidate's own answer is wrong or never comes:
# without a nonce or with a guessed one, with the nonce of the request being served (read from the sandbox's
# memory), twice, in part, with the nonce of an earlier request, ahead of the calls, on stdout and stderr;
# then the candidate returns a wrong value, exits, crashes, raises SystemExit or closes its channels.
FORGERIES = {
    "forge_an_answer": (BLIND, "WRONG"),
    "forge_an_answer_and_exit": (BLIND + "    os._exit(0)\n", "WRONG"),
    "forge_every_answer": (EVERY, "WRONG"),
    "forge_every_answer_and_exit": (EVERY + "    os._exit(0)\n", "WRONG"),
    "forge_the_answer": (STOLEN, "WRONG"),
    "forge_the_answer_and_exit": (STOLEN + "    os._exit(0)\n", "WRONG"),
    "forge_the_answer_and_crash": (STOLEN + "    os.abort()\n", "WRONG"),
    "forge_the_answer_and_raise": (STOLEN + "    raise SystemExit(0)\n", "WRONG"),
    "forge_the_answer_and_close_the_channel": (STOLEN + CLOSE_ALL, "WRONG"),
    "forge_the_answer_twice": (FORGE + "def attack():\n    write_everywhere(2 * answer(expected(), stolen_nonce()))\n",
                               "WRONG"),
    "forge_a_partial_answer": (FORGE + "def attack():\n    write_everywhere(answer(expected(), stolen_nonce())[:-1])\n",
                               "WRONG"),
    "forge_a_stale_answer": (
        FORGE + "seen = ['0' * 32]\ndef attack():\n    value, nonce = expected(), stolen_nonce()\n"
        "    write_everywhere(answer(value, seen[-1]))\n    seen.append(nonce)\n",
        "WRONG",
    ),
    "forge_answers_in_advance": (
        FORGE + "write_everywhere(b''.join(answer(value, nonce) for value in (3, 0.75, 5)"
        " for nonce in (stolen_nonce(), '0' * 32)))\ndef attack():\n    pass\n",
        "WRONG",
    ),
    "forge_on_stdout_and_stderr": (
        FORGE + "def attack():\n    line = answer(expected(), stolen_nonce()).decode()\n"
        "    print(line, flush=True)\n    sys.stderr.write(line)\n",
        "WRONG",
    ),
}
# A forged answer, then no answer of the candidate's at all: the run must end at its time limit.
FORGE_AND_HANG = STOLEN + "    while True:\n        pass\n"
# name: (code defining attack(), run where the tests call the candidate; what the candidate returns instead
# of the right answer). Each answer is wrong: only gaming the judge could make it "correct".
JUDGE_ATTACKS = {
    "stack_frames": (CLEAR_FRAMES + "import sys\ndef attack():\n    clear_frames(sys._getframe())\n", "WRONG"),
    "traceback_frames": (
        CLEAR_FRAMES + "import sys\ndef attack():\n    try:\n        raise ZeroDivisionError\n"
        "    except ZeroDivisionError:\n        clear_frames(sys.exc_info()[2].tb_frame)\n",
        "WRONG",
    ),
    "gc_objects": (
        ("import gc\ndef attack():\n    for obj in gc.get_objects():\n"
        "        if isinstance(obj, list) and any(isinstance(x, str) and 'assert' in x for x in obj):\n"
        "            obj.clear()\n        elif isinstance(obj, dict) and 'tests' in obj:\n            obj['tests'] = []\n"),
        "WRONG",
    ),
    "inspect_stack": (
        CLEAR_FRAMES + "import inspect\ndef attack():\n    for info in inspect.stack():\n        clear_frames(info.frame)\n",
        "WRONG",
    ),
    "report_and_exit": (FAKE_REPORTS + "import os\ndef attack():\n    fake_reports()\n    os._exit(0)\n", "WRONG"),
    "fake_reports_and_continue": (FAKE_REPORTS + "def attack():\n    fake_reports()\n", "WRONG"),
    "sys_exit_during_tests": ("import sys\ndef attack():\n    sys.exit(0)\n", "WRONG"),
    "os_exit_during_tests": ("import os\ndef attack():\n    os._exit(0)\n", "WRONG"),
    "always_equal_object": (
        ("class AlwaysEqual:\n    __eq__ = lambda self, other: True\n    __ne__ = lambda self, other: False\n"
        "    __hash__ = lambda self: 0\n    __bool__ = lambda self: True\n"
        "    def __getattr__(self, name):\n        return lambda *a, **k: self\ndef attack():\n    pass\n"),
        "AlwaysEqual()",
    ),
    "always_equal_int": ("class Int(int):\n    __eq__ = lambda self, other: True\ndef attack():\n    pass\n", "Int(0)"),
    "always_equal_str": ("class Str(str):\n    __eq__ = lambda self, other: True\ndef attack():\n    pass\n", "Str('x')"),
    "always_equal_list": ("class List(list):\n    __eq__ = lambda self, other: True\ndef attack():\n    pass\n", "List()"),
    "patch_isclose": (
        "import math\nmath.isclose = lambda *a, **k: True\ndef attack():\n    math.isclose = lambda *a, **k: True\n",
        "WRONG",
    ),
    "patch_numpy_testing": (
        ("import numpy, numpy.testing\ndef attack():\n    numpy.testing.assert_array_equal = lambda *a, **k: None\n"
        "    numpy.testing.assert_allclose = lambda *a, **k: None\nattack()\n"),
        "WRONG",
    ),
    "patch_pandas_testing": (
        "import pandas, pandas.testing\ndef attack():\n    pandas.testing.assert_frame_equal = lambda *a, **k: None\nattack()\n",
        "WRONG",
    ),
    **FORGERIES,
}
# The same test shapes, one per benchmark; WRONG is a wrong answer of the right type.
MBPP_TESTS = ("assert add(1, 2) == 3", "assert math.isclose(add(0.5, 0.25), 0.75)")
HUMANEVAL_TESTS = (
    ("import math\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n"
    "    assert math.isclose(candidate(0.5, 0.25), 0.75)\n"),
)
DS1000_NUMPY = '''
import numpy as np

exec_context = r"""
import numpy as np
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for values in ([1, 2, 3], [4.5]):
        env = {"test_input": np.array(values)}
        exec(code, env)
        np.testing.assert_array_equal(env["result"], np.array(values) * 2)
'''
DS1000_PANDAS = '''
import pandas as pd

exec_context = r"""
import pandas as pd
df = test_input
[insert]
"""


def exec_test(result, ans):
    try:
        pd.testing.assert_frame_equal(result, ans, check_dtype=False)
        return 1
    except:
        return 0


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    test_env = {"test_input": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})}
    exec(code, test_env)
    assert exec_test(test_env["result"], pd.DataFrame({"a": [2, 4], "b": ["x", "y"]}))
'''
