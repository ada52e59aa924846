"""Run untrusted Python (MBPP, HumanEval and DS-1000 candidates) and judge it by its tests.

The code comes from a model, so it is treated as hostile, and it never shares an interpreter
with the code that judges it. Each check starts two fresh processes from the interpreter
`python=` (the caller's by default), joined by pipes that carry only plain data (`python_data`):
the sandbox (`python_sandbox.py`) holds the candidate, locked down as far as the caller's
privileges allow (`isolation()`; as root: network, PID, mount and user namespaces and limits);
the judge (`python_judge.py`) runs the task's tests on what the sandbox sends back and alone
decides the verdict. `verify_python` raises rather than run a candidate under a weaker sandbox
than `isolation()` reports. What each mode isolates, why "correct" cannot be faked from the
sandbox, and what is not guaranteed: docs/python-sandbox.md.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from codelutra.execution.canonical import python_key
from codelutra.execution.limits import DEFAULT_TIMEOUT_S
from codelutra.execution.python_processes import Run, run_processes
from codelutra.execution.verdict import NO_CODE, Verdict, one_line

# Limits on one candidate, read at each call (a test may lower them).
MEMORY_LIMIT_BYTES = 2 * 1024**3  # address space of each of its processes (RLIMIT_AS)
FILE_SIZE_LIMIT_BYTES = 16 * 1024**2  # largest file it may write, its output included (RLIMIT_FSIZE)
SCRATCH_LIMIT_BYTES = 64 * 1024**2  # size of its scratch dir, where that is a private tmpfs
PROCESS_LIMIT = 64  # processes and threads of SANDBOX_UID (RLIMIT_NPROC); only when it runs as that uid
REPLY_LIMIT_BYTES = 64 * 1024**2  # the largest answer the judge reads from the sandbox
JUDGE_MEMORY_LIMIT_BYTES = 4 * 1024**3  # address space of the judge, which holds the tests and the answers
SANDBOX_UID = 65534  # "nobody": the uid (and gid) candidates run as when the caller is root

_PROBE_TIMEOUT_S = 60.0
_LEVELS = ("network", "filesystem", "user", "processes")
_JUDGED = ("correct", "wrong_result", "runtime_error", "syntax_error", "memory", "forbidden")


@dataclass(frozen=True)
class PythonCheck:
    candidate: str | None  # the untrusted code; None or blank -> verdict "no_code" (nothing is run)
    tests: tuple[str, ...] = ()  # test code run after it: MBPP's asserts, HumanEval's `test` (defines check)
    setup: str = ""  # MBPP's test_setup_code: runs after the candidate, before the tests
    entry_point: str | None = None  # HumanEval: `check(<entry_point>)` runs after the tests
    code_context: str | None = None  # DS-1000: defines test_execution(solution) (and maybe test_string)
    preamble: str = ""  # the program's start, before the candidate, on a line of its own (HumanEval's prompt)

    def program(self) -> str:
        """What runs in the sandbox: the preamble, then the candidate (whose definitions replace the preamble's)."""
        return f"{self.preamble}\n{self.candidate}" if self.preamble else self.candidate


@dataclass(frozen=True)
class Isolation:
    """What the sandbox enforces with one interpreter; see the module docstring."""

    network: str  # "namespace" (an empty network namespace) or "guard" (the audit hook only)
    filesystem: str  # "read-only" (all but the scratch dir) or "permissions" (whatever its user may write)
    user: str  # "uid 65534" (SANDBOX_UID, no capabilities) or "caller" (the caller's user)
    processes: str  # "pid namespace" or "session" (its session is killed; a new session escapes)
    notes: tuple[str, ...] = ()  # why a level is weaker than it could be


# ---------------------------------------------------------------------------------------------
# Public entry points


def verify_python(
    checks: Sequence[PythonCheck],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    python: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """Judge each candidate by its tests, the candidate in the sandbox and the tests beside it; verdicts in input order.

    Candidates that are the same program (`canonical.python_key`) with the same tests run once and
    share the verdict. Up to `workers` (default: one per CPU core) candidates run at once, each in its own process
    started from `python` (default: this interpreter; DS-1000 wants one with its pinned library
    versions). `progress(n)` is called with the number of checks just finished. Raises
    RuntimeError when the sandbox cannot start, or cannot be made what `isolation()` says it is.
    """
    report = progress or (lambda finished: None)
    interpreter = python or sys.executable
    verdicts: list[Verdict | None] = [None] * len(checks)
    to_run = []
    for index, check in enumerate(checks):
        if (check.candidate or "").strip():
            to_run.append(index)
        else:
            verdicts[index] = NO_CODE
    if len(to_run) < len(checks):
        report(len(checks) - len(to_run))
    if not to_run:
        return verdicts

    same_program: dict[tuple, list[int]] = {}  # each distinct program with its tests runs once
    for index in to_run:
        check = checks[index]
        key = (python_key(check.program()), check.tests, check.setup, check.entry_point, check.code_context)
        same_program.setdefault(key, []).append(index)
    expected = isolation(interpreter)
    with ThreadPoolExecutor(max_workers=max(1, min(workers or os.cpu_count() or 1, len(same_program)))) as pool:
        futures = {pool.submit(_verify_one, checks[ix[0]], timeout_s, interpreter, expected): ix for ix in same_program.values()}
        try:
            for future in as_completed(futures):
                for index in futures[future]:
                    verdicts[index] = future.result()
                report(len(futures[future]))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the running ones end within their time limit
            raise
    return verdicts


def isolation(python: str | None = None) -> Isolation:
    """What the sandbox enforces when started from `python` (default: this interpreter).

    Found by starting the sandbox once, without a candidate; remembered for the process.
    """
    return _probe(python or sys.executable)


@functools.cache
def _probe(python: str) -> Isolation:
    run = _run(python, {"probe": True, "expect": None}, None, _PROBE_TIMEOUT_S)
    found = run.records.get("isolation")
    if found is None:
        problem = run.records.get("setup_error", {}).get("detail") or run.last_output_line() or "no report"
        raise RuntimeError(f"the Python sandbox did not start with {python}: {problem}")
    return Isolation(**{level: found[level] for level in _LEVELS}, notes=tuple(found["notes"]))


def __getattr__(name: str) -> str:
    """NETWORK_ISOLATION: "namespace" or "guard", with this interpreter (found on first use)."""
    if name == "NETWORK_ISOLATION":
        return isolation().network
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# One candidate


def _verify_one(check: PythonCheck, timeout_s: float, python: str, expected: Isolation) -> Verdict:
    sandbox_job = {"probe": False, "expect": {level: getattr(expected, level) for level in _LEVELS}}
    judge_job = {
        "check": {
            "candidate": check.program(),
            "tests": list(check.tests),
            "setup": check.setup or "",
            "entry_point": check.entry_point,
            "code_context": check.code_context,
        },
        "memory_bytes": JUDGE_MEMORY_LIMIT_BYTES,
        "cpu_s": _cpu_limit_s(timeout_s),
        "reply_limit_bytes": REPLY_LIMIT_BYTES,
    }
    return _verdict(_run(python, sandbox_job, judge_job, timeout_s), timeout_s)


def _run(python: str, sandbox_job: dict, judge_job: dict | None, timeout_s: float) -> Run:
    """Run the sandbox (and the judge) under this module's limits, read at each call."""
    limits = {
        "cpu_s": _cpu_limit_s(timeout_s),
        "memory_bytes": MEMORY_LIMIT_BYTES,
        "file_size_bytes": FILE_SIZE_LIMIT_BYTES,
        "scratch_bytes": SCRATCH_LIMIT_BYTES,
        "processes": PROCESS_LIMIT,
    }
    sandbox_job = {**sandbox_job, "uid": SANDBOX_UID, "timeout_s": timeout_s, "limits": limits}
    return run_processes(python, sandbox_job, judge_job, timeout_s)


def _verdict(run: Run, timeout_s: float) -> Verdict:
    """The verdict from what the judge decided and how the sandbox ended; see the module docstring."""
    records = run.records
    if "setup_error" in records:
        raise RuntimeError(f"Python sandbox setup failed: {records['setup_error']['detail']}")
    if "forbidden" in records:
        return Verdict("forbidden", one_line(f"forbidden: {records['forbidden'].get('detail')}"), run.seconds)
    outcome = run.outcome or {}
    finished = run.finished
    ended_cleanly = finished is not None and (finished["signal"], finished["exit_code"]) == (None, 0) and not (
        finished["timed_out"] or finished["cpu_exceeded"])
    if outcome.get("kind") in _JUDGED and (outcome["kind"] != "correct" or ended_cleanly):  # "correct" needs both
        return Verdict(outcome["kind"], one_line(str(outcome.get("detail", ""))), run.seconds)
    if run.judge_killed:
        return Verdict("timeout", f"the tests exceeded the {timeout_s:g} s time limit", run.seconds)
    if run.supervisor_killed or finished is None:
        how = "was killed" if run.supervisor_killed else "died"
        return Verdict("runtime_error", f"the sandbox's supervisor {how} (the candidate did not finish)", run.seconds)
    if finished["cpu_exceeded"]:
        return Verdict("timeout", f"exceeded the {_cpu_limit_s(timeout_s)} s CPU time limit", run.seconds)
    if finished["timed_out"]:
        return Verdict("timeout", f"exceeded the {timeout_s:g} s time limit", run.seconds)
    if run.outcome is None:
        return Verdict("runtime_error", one_line(f"the judge ended without a verdict: {run.judge_output}"), run.seconds)
    if finished["signal"] is None and finished["exit_code"] == 0 and "done" in records:
        return Verdict("runtime_error", one_line(str(outcome.get("detail", ""))), run.seconds)
    if finished["signal"] is not None:
        how = f"was killed by {_signal_name(finished['signal'])}"
    else:
        how = f"exited with code {finished['exit_code']}"
    when = "after its tests had passed" if outcome.get("kind") == "correct" else "before its tests finished"
    detail = f"the candidate's process {how} {when}"
    if run.last_output_line():
        detail += f"; last output: {run.last_output_line()}"
    return Verdict("runtime_error", one_line(detail), run.seconds)


def _cpu_limit_s(timeout_s: float) -> int:
    """CPU seconds allowed: more than the wall-clock limit, so that it only catches several busy threads."""
    return math.ceil(timeout_s) + 1


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


