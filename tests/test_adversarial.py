"""Hostile candidates against both sandboxes: none may pass, each gets the verdict it deserves, and
nothing outside the sandbox changes (files, databases, the network, this process).

Candidates run with short time limits; the whole file takes well under two minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import sysconfig
import threading
import time
import uuid

import pytest

from codelutra.execution import python_judge
from codelutra.execution.python import PythonCheck, isolation, verify_python
from codelutra.execution.sql import SqlCheck, verify_sql
from tests.python_attacks import (
    DS1000_NUMPY,
    DS1000_PANDAS,
    FAKE_REPORTS,
    FORGE,
    FORGE_AND_HANG,
    FORGERIES,
    HUMANEVAL_TESTS,
    JUDGE_ATTACKS,
    MBPP_TESTS,
)

ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ("assert add(1, 2) == 3",)
SECRET = "hunter2-" + uuid.uuid4().hex[:8]
TMP_PROBE = f"/tmp/codelutra-adversarial-{uuid.uuid4().hex[:8]}"
SITE_PACKAGES = sysconfig.get_paths()["purelib"]

# name: (candidate, expected kind or kinds, text the detail must contain). Placeholders in capitals
# are filled in by the `places` fixture. Most candidates never define `add`: the tests then fail
# with a NameError, so whatever the attack achieves, the verdict is not "correct".
HOSTILE_PYTHON = {
    "endless_loop": ("while True:\n    pass\n", "timeout", "time limit"),
    "sigterm_ignored_then_sleep": (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n",
        "timeout",
        "time limit",
    ),
    "memory_bomb": ("hog = ' ' * (10 ** 11)\n", "memory", "MemoryError"),
    "output_flood": ("while True:\n    print('A' * 100000)\n", "runtime_error", "File too large"),
    "shell_rm": ("import os\nos.system('rm -rf CANARY_DIR')\n", "forbidden", "running a shell command"),
    "subprocess_shell_rm": (
        "import subprocess\nsubprocess.run('rm -rf CANARY_DIR', shell=True)\n",
        "forbidden",
        "running a shell (sh)",
    ),
    "rm_without_a_shell": (
        "import subprocess\nsubprocess.run(['rm', '-rf', 'CANARY_DIR'])\n",
        "runtime_error",
        "NameError",
    ),
    "libc_system_rm_and_write": (
        "import ctypes\nctypes.CDLL(None).system(b'rm -rf CANARY_DIR; touch OUTSIDE_DIR/libc-was-here TMP_PROBE')\n",
        "runtime_error",
        "NameError",
    ),
    "os_remove": ("import os\nos.remove('CANARY_DIR/canary.txt')\n", "forbidden", "changing CANARY_DIR/canary.txt"),
    "shutil_rmtree": ("import shutil\nshutil.rmtree('CANARY_DIR')\n", "forbidden", "outside the scratch dir"),
    "chmod_outside": ("import os\nos.chmod('CANARY_DIR/canary.txt', 0o777)\n", "forbidden", "changing"),
    "rename_outside": (
        "import os\nos.rename('CANARY_DIR/canary.txt', 'stolen.txt')\n",
        "forbidden",
        "outside the scratch dir",
    ),
    "write_outside": ("open('OUTSIDE_DIR/written.txt', 'w').write('pwned')\n", "forbidden", "writing OUTSIDE_DIR"),
    "write_to_tmp": ("open('TMP_PROBE', 'w').write('pwned')\n", "forbidden", "writing TMP_PROBE"),
    "write_outside_refusal_caught": (
        "try:\n    open('OUTSIDE_DIR/caught.txt', 'w')\nexcept Exception:\n    pass\n" + ADD,
        "forbidden",
        "writing",
    ),
    "write_through_a_symlink": (
        "import os\nos.symlink('OUTSIDE_DIR', 'door')\nopen('door/through.txt', 'w').write('pwned')\n",
        "forbidden",
        "writing OUTSIDE_DIR/through.txt",
    ),
    "poison_site_packages": ("open('SITE_PACKAGES/codelutra_poison.py', 'w').write('x = 1')\n", "forbidden", "writing"),
    "poison_site_packages_from_a_subprocess": (
        "import subprocess\nsubprocess.run(['touch', 'SITE_PACKAGES/codelutra_poison.py'])\n",
        "runtime_error",
        "NameError",
    ),
    "fill_the_scratch_dir": (
        "for n in range(12):\n    open(f'fill{n}', 'wb').write(bytes(10 * 1024 * 1024))\n",
        "runtime_error",
        "Error",
    ),
    "socket_connect_loopback": (
        "import socket\nsocket.create_connection(('127.0.0.1', LISTENER_PORT), timeout=1).sendall(b'pwned')\n",
        "forbidden",
        "network access",
    ),
    "raw_socket_connect": (
        "import _socket\nraw = _socket.socket()\nraw.connect(('127.0.0.1', LISTENER_PORT))\n",
        "forbidden",
        "network access (socket.connect)",
    ),
    "connect_from_a_subprocess": (
        "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'import socket; "
        "socket.create_connection((\"127.0.0.1\", LISTENER_PORT), timeout=1).sendall(b\"pwned\")'])\n",
        "runtime_error",
        "NameError",
    ),
    "dns_lookup": ("import socket\nsocket.gethostbyname('example.com')\n", "forbidden", "network access"),
    "sys_exit_before_tests": ("import sys\nsys.exit(0)\n" + ADD, "runtime_error", "SystemExit: 0 (in the candidate"),
    "os_exit_before_tests": ("import os\nos._exit(0)\n" + ADD, "runtime_error", "exited with code 0"),
    "exit_from_an_alarm_during_tests": (
        "import os, signal, time\nsignal.signal(signal.SIGALRM, lambda *_: os._exit(0))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.2)\ndef add(a, b):\n    time.sleep(5)\n    return a + b\n",
        "runtime_error",
        "exited with code 0",
    ),
    "kill_the_caller": ("import os\nos.kill(PARENT_PID, 9)\n", "forbidden", "signal to process PARENT_PID"),
    # Its parent is outside a PID namespace (getppid() is 0: its own process group) or in another session.
    "kill_the_parent": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        ("runtime_error", "forbidden"),
        "",
    ),
    "kill_everything": ("import os\nos.kill(-1, 9)\n", "forbidden", "signal"),
    "forge_the_report": (
        "import os\nfake = repr({'event': 'outcome', 'kind': 'correct', 'detail': '', 'nonce': 'guess'})\n"
        "for fd in range(3, 64):\n    try:\n        os.write(fd, ('\\n' + fake + '\\n').encode())\n"
        "    except OSError:\n        pass\nos._exit(0)\n",
        "runtime_error",
        "exited with code 0",
    ),
    "patch_assertion_error": (
        "import builtins\nbuiltins.AssertionError = type('Harmless', (Exception,), {})\ndef add(a, b):\n    return 0\n",
        "wrong_result",
        "test 1 failed",
    ),
    "patch_exec_and_compile": (
        "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.compile = lambda *a, **k: None\n"
        "def add(a, b):\n    return 0\n",
        "wrong_result",
        "",
    ),
    "patch_the_driver": (
        "import __main__, json, os\nfor name in dir(__main__):\n"
        "    if not name.startswith('__') and callable(getattr(__main__, name)):\n"
        "        setattr(__main__, name, lambda *a, **k: None)\njson.dumps = lambda *a, **k: 'correct'\n"
        "os.write = lambda *a: None\ndef add(a, b):\n    return 0\n",
        "wrong_result",
        "",
    ),
    "plant_a_module_for_the_tests": (
        "open('fractions.py', 'w').write('Fraction = lambda *args: 3')\n" + ADD,
        "wrong_result",
        "test 2 failed",
    ),
    "read_environment_secret": (
        "import os\nraise RuntimeError(str(os.environ.get('SECRET_TOKEN')))\n",
        "runtime_error",
        "RuntimeError: None",
    ),
    "read_secret_file": (
        "try:\n    leaked = open('CANARY_DIR/secret.txt').read()\n"
        "except OSError as error:\n    leaked = type(error).__name__\nraise RuntimeError(leaked)\n",
        "runtime_error",
        "RuntimeError",
    ),
}
# Candidates with tests of their own (the default is ADD_TESTS).
OWN_TESTS = {"plant_a_module_for_the_tests": ("import fractions", "assert fractions.Fraction(1, 2) == 3")}


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """A canary dir (with a file and a secret) and an empty dir, both outside any scratch dir."""
    canary_dir = tmp_path_factory.mktemp("canary")
    (canary_dir / "canary.txt").write_text("still here")
    (canary_dir / "secret.txt").write_text(SECRET)
    (canary_dir / "secret.txt").chmod(0o600)
    outside_dir = tmp_path_factory.mktemp("outside")
    return {"CANARY_DIR": str(canary_dir), "OUTSIDE_DIR": str(outside_dir)}


@pytest.fixture(scope="module")
def listener():
    """A TCP server on loopback that records whatever connects to it: (port, what it received)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    received: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                received.append(connection.recv(100) or b"(connected)")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


def fill_in(text: str, places: dict[str, str], port: int) -> str:
    values = {**places, "LISTENER_PORT": str(port), "PARENT_PID": str(os.getpid()), "TMP_PROBE": TMP_PROBE}
    values["SITE_PACKAGES"] = SITE_PACKAGES
    for name, value in values.items():
        text = text.replace(name, value)
    return text


@pytest.fixture(scope="module")
def hostile_verdicts(places, listener):
    port, _ = listener
    os.environ["SECRET_TOKEN"] = SECRET  # in the caller's environment, not the candidates'
    try:
        checks = [
            PythonCheck(fill_in(candidate, places, port), OWN_TESTS.get(name, ADD_TESTS))
            for name, (candidate, _, _) in HOSTILE_PYTHON.items()
        ]
        verdicts = verify_python(checks, timeout_s=2, workers=2)
    finally:
        del os.environ["SECRET_TOKEN"]
    details = [fill_in(detail_part, places, port) for _, _, detail_part in HOSTILE_PYTHON.values()]
    return dict(zip(HOSTILE_PYTHON, zip(verdicts, details)))


@pytest.mark.parametrize("name", HOSTILE_PYTHON)
def test_hostile_python_is_not_correct(hostile_verdicts, name):
    verdict, detail_part = hostile_verdicts[name]
    expected = HOSTILE_PYTHON[name][1]
    assert verdict.kind != "correct"
    assert verdict.kind in ((expected,) if isinstance(expected, str) else expected), verdict
    assert detail_part in verdict.detail, verdict


def test_files_outside_the_scratch_dir_are_untouched(hostile_verdicts, places):
    canary = os.path.join(places["CANARY_DIR"], "canary.txt")
    with open(canary) as f:
        assert f.read() == "still here"
    assert os.stat(canary).st_mode & 0o777 != 0o777
    assert os.listdir(places["OUTSIDE_DIR"]) == []
    assert not os.path.exists(TMP_PROBE)
    assert not os.path.exists(os.path.join(SITE_PACKAGES, "codelutra_poison.py"))


def test_nothing_reaches_the_network(hostile_verdicts, listener):
    _, received = listener
    if isolation().network != "namespace":
        pytest.skip("no network namespace here: the audit hook guards Python's sockets, not a subprocess's")
    time.sleep(0.3)  # let the server notice a late connection
    assert received == []


def test_secrets_do_not_leak(hostile_verdicts):
    leaked = [name for name, (verdict, _) in hostile_verdicts.items() if SECRET in verdict.detail]
    if isolation().user == "caller":
        leaked.remove("read_secret_file")  # the caller's own file, readable by its own user
    assert leaked == []


def processes_named(name: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() == name:
                    found.append(int(pid))
        except OSError:
            pass
    return found


def name_this_process(name: str) -> str:
    return f"import ctypes\nctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n"  # PR_SET_NAME


def test_fork_bomb_is_bounded_and_cleaned_up():
    if isolation().user == "caller":
        pytest.skip("no process limit without a uid of the sandbox's own: a fork bomb would hit the machine")
    marker = f"bomb{uuid.uuid4().hex[:8]}"
    bomb = name_this_process(marker) + "import os\nwhile True:\n    os.fork()\n"
    threads = "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(30,)).start()\n"
    started = time.monotonic()
    checks = [PythonCheck(bomb, ADD_TESTS), PythonCheck(threads, ADD_TESTS)]
    bomb_verdict, threads_verdict = verify_python(checks, timeout_s=5, workers=1)
    assert bomb_verdict.kind == "runtime_error" and "BlockingIOError" in bomb_verdict.detail, bomb_verdict
    assert threads_verdict.kind == "runtime_error", threads_verdict
    assert "can't start new thread" in threads_verdict.detail, threads_verdict
    assert time.monotonic() - started < 30
    assert processes_named(marker) == []


def test_a_process_in_a_new_session_does_not_outlive_the_run():
    if isolation().processes != "pid namespace":
        pytest.skip("no PID namespace here: a process that starts a new session escapes the kill")
    marker = f"escape{uuid.uuid4().hex[:8]}"
    escape = "import os, time\nif os.fork() == 0:\n    os.setsid()\n" + "".join(
        "    " + line + "\n" for line in name_this_process(marker).splitlines()
    ) + "    time.sleep(60)\n"
    [verdict] = verify_python([PythonCheck(escape, ADD_TESTS)], timeout_s=5)
    assert verdict.kind == "runtime_error" and "NameError" in verdict.detail, verdict
    assert processes_named(marker) == []


# ---------------------------------------------------------------------------------------------
# Python: gaming the judge. The tests run in a process of their own, so none of these may pass.

def judge_check(shape: str, attack: str, answer: str) -> PythonCheck:
    """The candidate of one attack in one shape; `answer` replaces WRONG (None: the right answer, no attack)."""
    define = "def attack():\n    pass\n" if answer is None else attack
    if shape == "mbpp":
        body = f"import math\n{define}def add(a, b):\n    attack()\n    return {(answer or 'a + b').replace('WRONG', 'a - b')}\n"
        return PythonCheck(body, MBPP_TESTS)
    if shape == "humaneval":
        body = f"{define}def add(a, b):\n    attack()\n    return {(answer or 'a + b').replace('WRONG', 'a * b')}\n"
        return PythonCheck(body, HUMANEVAL_TESTS, entry_point="add")
    if shape == "ds1000_numpy":
        result = (answer or "a * 2").replace("WRONG", "a * 3")
        return PythonCheck(f"{define}attack()\nresult = {result}\n", code_context=DS1000_NUMPY)
    result = (answer or "df.assign(a=df.a * 2)").replace("WRONG", "df.assign(a=df.a * 3)")
    return PythonCheck(f"{define}attack()\nresult = {result}\n", code_context=DS1000_PANDAS)


JUDGE_SHAPES = ("mbpp", "humaneval", "ds1000_numpy", "ds1000_pandas")
# Every attack in the first three shapes; pandas (slow to start) for what is pandas' own.
PANDAS_ATTACKS = ("always_equal_object", "patch_pandas_testing", "report_and_exit", "forge_every_answer",
                  "forge_the_answer", "forge_the_answer_and_exit")
JUDGE_CASES = [(shape, name) for shape in JUDGE_SHAPES[:3] for name in JUDGE_ATTACKS]
JUDGE_CASES += [("ds1000_pandas", name) for name in PANDAS_ATTACKS]


@pytest.fixture(scope="module")
def judge_verdicts():
    pytest.importorskip("pandas")
    cases = {(shape, None): judge_check(shape, "", None) for shape in JUDGE_SHAPES}  # honest: must pass
    for shape, name in JUDGE_CASES:
        attack, answer = JUDGE_ATTACKS[name]
        cases[(shape, name)] = judge_check(shape, attack, answer)
    verdicts = verify_python(list(cases.values()), timeout_s=30, workers=2)  # pandas starts slowly on a busy machine
    return dict(zip(cases, verdicts))


@pytest.mark.parametrize("shape", JUDGE_SHAPES)
def test_honest_answers_in_the_attack_shapes_pass(judge_verdicts, shape):
    assert judge_verdicts[(shape, None)].kind == "correct", judge_verdicts[(shape, None)]


@pytest.mark.parametrize(("shape", "name"), JUDGE_CASES)
def test_gaming_the_judge_is_not_correct(judge_verdicts, shape, name):
    verdict = judge_verdicts[(shape, name)]
    assert verdict.kind in ("wrong_result", "runtime_error"), verdict


def test_a_forged_answer_is_not_taken_for_the_candidates(judge_verdicts):
    """Issue 27: an answer line written by the candidate, with the expected value, once made the verdict "correct".

    Each forgery breaks the channel (runtime_error), but the one written where the judge does not read
    (stdout, stderr): there the candidate's own, wrong, answer counts."""
    forged = [(shape, name) for shape, name in JUDGE_CASES if name in FORGERIES]
    assert {shape for shape, _ in forged} == set(JUDGE_SHAPES)
    for shape, name in forged:
        expected = "wrong_result" if name == "forge_on_stdout_and_stderr" else "runtime_error"
        assert judge_verdicts[(shape, name)].kind == expected, (shape, name, judge_verdicts[(shape, name)])


def test_a_forged_answer_then_no_answer_is_a_timeout():
    checks = [judge_check(shape, FORGE_AND_HANG, "WRONG") for shape in JUDGE_SHAPES[:3]]
    verdicts = verify_python(checks, timeout_s=8, workers=2)
    assert [v.kind for v in verdicts] == ["timeout"] * 3, verdicts


def test_any_line_but_the_answer_is_a_failed_run_even_beside_the_right_value():
    """A second copy of the right answer, a blank line, a part of a line: the channel holds only the answers."""
    writes = ("answer(a + b, stolen_nonce())", "b'\\n'", "answer(a + b, stolen_nonce())[:-1]", "b' '")
    honest = PythonCheck("import math\ndef add(a, b):\n    return a + b\n", MBPP_TESTS)
    checks = [honest] + [PythonCheck(FORGE + f"import math\ndef add(a, b):\n    write_everywhere({write})\n"
                                     "    return a + b\n", MBPP_TESTS) for write in writes]
    verdicts = verify_python(checks, timeout_s=5, workers=2)
    assert [v.kind for v in verdicts] == ["correct"] + ["runtime_error"] * len(writes), verdicts
    assert all("not the answer to its 'call' request" in v.detail for v in verdicts[1:]), verdicts


def judges_end(answer_to):
    """The judge's end of a channel whose other end the test plays: it writes `answer_to(request)` for each
    request, and ends (closes the channel) where that is None."""
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()

    def play():
        with os.fdopen(request_read, "rb") as requests, os.fdopen(reply_write, "wb", buffering=0) as replies:
            for line in requests:
                answer = answer_to(json.loads(line))
                if answer is None:
                    return
                replies.write(answer)

    threading.Thread(target=play, daemon=True).start()
    return python_judge.Sandbox(request_write, reply_read, 1 << 20)


def json_line(fields: dict) -> bytes:
    return (json.dumps(fields) + "\n").encode()


def true_answer(request: dict) -> bytes:
    return json_line({"nonce": request["nonce"], "ok": 3})


# What the other end writes instead of (or beside) the true answer to each request: none of it may be taken.
UNTRUE_ANSWERS = {
    "no_nonce": lambda request: json_line({"ok": 3}),
    "a_guessed_nonce": lambda request: json_line({"nonce": "0" * 32, "ok": 3}),
    "an_extra_field": lambda request: json_line({"nonce": request["nonce"], "ok": 3, "error": None}),
    "a_space_first": lambda request: b" " + true_answer(request),
    "a_blank_line_first": lambda request: b"\n" + true_answer(request),
    "twice": lambda request: 2 * true_answer(request),
    "a_partial_line_first": lambda request: true_answer(request)[:-3] + true_answer(request),
    "not_an_object": lambda request: json_line([request["nonce"], 3]),
    "bytes_after_the_last_answer": lambda request: true_answer(request) + (b"x" if request["op"] == "finish" else b""),
    "the_end": lambda request: None,
    "the_end_after_an_answer": lambda request: true_answer(request) if request["op"] == "call" else None,
}


def test_the_judge_takes_the_true_answer():
    sandbox = judges_end(true_answer)
    assert sandbox.ask("call", target=0) == 3 and sandbox.ask("call", target=0) == 3
    sandbox.finish()


@pytest.mark.parametrize("name", UNTRUE_ANSWERS)
def test_the_judge_takes_no_other_line_and_the_break_stands(name):
    sandbox = judges_end(UNTRUE_ANSWERS[name])
    with pytest.raises(python_judge.Ended) as ended:
        sandbox.ask("call", target=0)
        sandbox.ask("call", target=0)
        sandbox.finish()
    with pytest.raises(python_judge.Ended) as again:  # whatever the tests catch, the run stays failed
        sandbox.finish()
    assert again.value is ended.value


def test_a_forged_answer_is_not_data_and_not_correct():
    """A candidate that writes its own answer line to the judge's pipe, then ends: a failed run, whatever the line says."""
    forge = FAKE_REPORTS + "fake_reports()\nimport os\nos._exit(0)\n"
    verdicts = verify_python([PythonCheck(forge, ADD_TESTS), PythonCheck(forge, HUMANEVAL_TESTS, entry_point="add")])
    assert [v.kind for v in verdicts] == ["runtime_error", "runtime_error"], verdicts


DS1000_PLOT = '''
exec_context = r"""
[insert]
open("output.png", "w").write(drawing)
result = None
"""


def test_execution(solution: str):
    open("ans.png", "w").write("expected")  # DS-1000 draws the expected plot first
    env = {}
    exec(exec_context.replace("[insert]", solution), env)
    assert open("output.png").read() == open("ans.png").read()
'''


def test_a_file_the_tests_wrote_cannot_be_replaced_by_the_candidates():
    honest = "drawing = 'expected'"
    forged = "drawing = 'wrong'\nopen('ans.png', 'w').write('wrong')"  # makes the expected plot its own
    verdicts = verify_python([PythonCheck(code, code_context=DS1000_PLOT) for code in (honest, forged)], workers=2)
    assert [v.kind for v in verdicts] == ["correct", "wrong_result"], verdicts


def test_builtins_and_modules_the_tests_use_stay_the_judges():
    """MBPP's tests use `len`, `math`, `sorted` from the candidate's globals in the usual harness."""
    fakes = "def len(x):\n    return 3\nclass math:\n    isclose = staticmethod(lambda *a, **k: True)\n"
    fakes += "def sorted(x):\n    return [1, 2, 3]\ndef f(x):\n    return [0]\n"
    tests = ("assert len(f(1)) == 3", "assert math.isclose(f(1)[0], 0.5)", "assert sorted(f(1)) == [1, 2, 3]")
    verdicts = verify_python([PythonCheck(fakes, (test,)) for test in tests], workers=2)
    assert [v.kind for v in verdicts] == ["wrong_result", "runtime_error", "wrong_result"], verdicts


def test_the_entry_point_cannot_be_unset_or_replaced():
    unset = "def add(a, b):\n    return a * b\ndel add\n"
    own_check = "def add(a, b):\n    return a * b\ndef check(candidate):\n    pass\nimport builtins\nbuiltins.check = check\n"
    renamed = "def plus(a, b):\n    return a + b\nadd = None\n"
    checks = [PythonCheck(code, HUMANEVAL_TESTS, entry_point="add") for code in (unset, own_check, renamed)]
    unset_verdict, own_check_verdict, renamed_verdict = verify_python(checks, workers=2)
    assert unset_verdict.kind == "runtime_error" and "NameError" in unset_verdict.detail, unset_verdict
    assert own_check_verdict.kind == "wrong_result", own_check_verdict
    assert renamed_verdict.kind == "runtime_error", renamed_verdict  # None is data: calling it fails in the judge


# ---------------------------------------------------------------------------------------------
# SQL

HOSTILE_SQL = {
    "recursive_cte_blowup": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        "timeout",
    ),
    "huge_cross_join": ("SELECT count(*) FROM numbers AS a, numbers AS b, numbers AS c, numbers AS d", "timeout"),
    "drop": ("DROP TABLE singer", "forbidden"),
    "update": ("UPDATE singer SET name = 'pwned'", "forbidden"),
    "insert": ("INSERT INTO singer VALUES (99, 'Eve')", "forbidden"),
    "delete": ("DELETE FROM singer", "forbidden"),
    "attach": ("ATTACH DATABASE '{folder}/attached.sqlite' AS other", "forbidden"),
    "vacuum_into": ("VACUUM INTO '{folder}/copy.sqlite'", "forbidden"),
    "pragma_writable_schema": ("PRAGMA writable_schema = 1", "forbidden"),
    "pragma_journal_mode": ("PRAGMA journal_mode = WAL", "forbidden"),
    "load_extension": ("SELECT load_extension('/tmp/evil')", "forbidden"),
    "create_trigger": ("CREATE TRIGGER t AFTER INSERT ON singer BEGIN DELETE FROM singer; END", "forbidden"),
}


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hostile_sql") / "concert_singer.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT);
            INSERT INTO singer VALUES (1, 'Ann'), (2, 'Bob');
            CREATE TABLE numbers (n INTEGER);
            WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000)
                INSERT INTO numbers SELECT n FROM c;
            """
        )
    conn.close()
    return str(path)


def test_hostile_sql_is_refused_and_the_database_is_unchanged(db):
    folder = os.path.dirname(db)
    files_before = sorted(os.listdir(folder))
    hash_before = hashlib.sha256(open(db, "rb").read()).hexdigest()
    checks = [SqlCheck(db, "SELECT name FROM singer", sql.format(folder=folder)) for sql, _ in HOSTILE_SQL.values()]
    started = time.monotonic()
    verdicts = verify_sql(checks, timeout_s=1, workers=2)
    for name, verdict in zip(HOSTILE_SQL, verdicts):
        assert verdict.kind == HOSTILE_SQL[name][1], (name, verdict)
    assert time.monotonic() - started < 20
    assert hashlib.sha256(open(db, "rb").read()).hexdigest() == hash_before
    assert sorted(os.listdir(folder)) == files_before
