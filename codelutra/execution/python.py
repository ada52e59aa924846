"""Run untrusted Python (MBPP, HumanEval and DS-1000 candidates) and judge it by its tests.

The code comes from a model, so it is treated as hostile, and it never shares an interpreter
with the code that judges it. Each check starts two fresh processes from the interpreter
`python=` (the caller's by default), joined by two pipes that carry one JSON line each way:

* the sandbox (`python_sandbox.py`) holds the candidate and answers requests with plain data;
* the judge (`python_judge.py`), the "trusted process": a plain interpreter of its own, as the
  caller's user, in a private working dir, under memory and CPU limits. It runs the task's test
  code (MBPP's setup and asserts, HumanEval's `check`, DS-1000's `code_context`) with the names
  the tests use from the candidate bound to what the sandbox sent back, and decides the verdict.
  It never runs candidate code, and the caller's process runs neither.

Only plain values cross (`python_data`): None, bool, int, float (inf, nan), complex, str, bytes,
list, tuple, dict, set; numpy arrays and scalars, pandas indexes, series and frames, as data
(dtype, shape, values, index, columns), never pickled. The judge rebuilds each with its own types.
A candidate's object that is not data stays in the sandbox: the judge holds a number for it, whose
calls, attributes, truth, length and items are requests to the sandbox answered with data, and
which refuses to be compared or hashed (that would be the candidate's own `__eq__`). DS-1000's `exec(code, test_env)` runs in the sandbox: `test_env` goes there as
data; the program's variables and the files it wrote (the plot) come back as data.

The sandbox forks in two: the supervisor enters new namespaces, then waits for the runner, kills
it at the time limit and reports how it ended; the runner locks itself down and serves the judge.
What the lock-down achieves depends on the caller's privileges; `isolation()` says what it is with
a given interpreter (it starts the sandbox once to find out) and every run must achieve exactly
that, or `verify_python` raises rather than run a candidate under a weaker sandbox. As root, on
Linux (the normal case here):

* network: an empty network namespace (no interface but a loopback that is down);
* processes: a PID namespace whose init is the runner, so that when it ends, whatever it started
  ends with it, double forks and new sessions included; it cannot see or signal outside processes;
* filesystem: a mount namespace in which every mount is read-only except the scratch dir, itself
  a private tmpfs of `SCRATCH_LIMIT_BYTES` that vanishes with the run. Directories that the
  sandbox uid cannot pass through on the way to the interpreter (Python under /root) are covered,
  in that namespace only, by a tmpfs that holds just the way to it;
* user: the runner becomes `SANDBOX_UID` ("nobody"), with no capabilities, no supplementary groups
  and no_new_privs (setuid programs cannot give root back), so it reads only what anyone may read;
* limits: CPU time, address space, file size, core dumps, and `PROCESS_LIMIT` processes for the
  sandbox uid (RLIMIT_NPROC counts every process of that uid: all candidates running at once share
  it).

Without root, where unprivileged user namespaces are allowed, network and PID namespaces are still
used, but the candidate runs as the caller's user: it may read and write what that user may (the
audit hook below refuses writes outside the scratch dir, but not those made through ctypes or a
subprocess), and no process limit applies. Where no namespace can be made either,
`NETWORK_ISOLATION` is "guard": only the audit hook refuses network access, and a process the
candidate starts in a new session outlives the run. In no mode is the total memory of a
candidate's processes bounded: each has its own address-space limit (no cgroup is used).

In every mode the runner installs an audit hook that refuses, and reports, what a benchmark
solution has no business doing: network access, running a shell, changing files outside the
scratch dir, signalling processes outside its session. Such a candidate gets the verdict
"forbidden" whatever else happens. The hook is detection and a last line of defence in "guard"
mode; the kernel's namespaces, permissions and limits are what contain the candidate.

When "correct" is given: only by the judge, after the setup code and every test ran in its own
process without an exception, each comparison made there between values it built itself. So
nothing the candidate does in the sandbox reaches the tests, the comparison or the verdict: not
walking frames, tracebacks, `gc` or `inspect` (no test runner is in its process), not calling a
report function or writing fake reports and exiting (its channels carry data, and an ended
sandbox is a failed run), not an object equal to everything or a subclass of int, str or list
(it arrives as its plain value, or as an object that refuses comparison), not patching
`math.isclose`, `numpy.testing` or `pandas.testing` (the judge's modules are its own), not
`sys.exit(0)` or `os._exit(0)`, not unsetting the entry point (a NameError in the judge).

What it does not guarantee: a helper that the tests call and the candidate defines (HumanEval 32's
`poly`, 38's `encode_cyclic`, 50's `encode_shift`: the prompt gives them, the answer repeats them)
is the candidate's, so it can be rewritten to pass its own answer. An answer that hard-codes the
expected values is correct, as anywhere. A test that mutates an argument and reads it back sees
its own copy. DS-1000's Matplotlib tests that inspect the live figure (`plt.gca()`) after an image
mismatch see the judge's empty figure: the image decides alone. Values that are not data (a torch
tensor, a fitted model) reach the tests only as objects to call, so tests comparing them fail.
And all of this holds fully where the candidate runs as uid 65534 (`isolation().user`): without
root it runs as the caller's user, as the judge does, and could reach the judge through the
operating system (ptrace, /proc) where the kernel allows that.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from codelutra.execution.canonical import python_key
from codelutra.execution.verdict import NO_CODE, Verdict

# Limits on one candidate, read at each call (a test may lower them).
MEMORY_LIMIT_BYTES = 2 * 1024**3  # address space of each of its processes (RLIMIT_AS)
FILE_SIZE_LIMIT_BYTES = 16 * 1024**2  # largest file it may write, its output included (RLIMIT_FSIZE)
SCRATCH_LIMIT_BYTES = 64 * 1024**2  # size of its scratch dir, where that is a private tmpfs
PROCESS_LIMIT = 64  # processes and threads of SANDBOX_UID (RLIMIT_NPROC); only when it runs as that uid
OUTPUT_LIMIT_BYTES = 64 * 1024  # how much of its output (the end) is read back, to explain a crash
REPLY_LIMIT_BYTES = 64 * 1024**2  # the largest answer the judge reads from the sandbox
JUDGE_MEMORY_LIMIT_BYTES = 4 * 1024**3  # address space of the judge, which holds the tests and the answers
SANDBOX_UID = 65534  # "nobody": the uid (and gid) candidates run as when the caller is root

_SANDBOX_SCRIPT = Path(__file__).with_name("python_sandbox.py")
_JUDGE_SCRIPT = Path(__file__).with_name("python_judge.py")
_SUPERVISOR_GRACE_S = 10.0  # past its time limit, how long the supervisor and the judge get before they are killed
_PROBE_TIMEOUT_S = 60.0
_DETAIL_CHARS = 200
_LEVELS = ("network", "filesystem", "user", "processes")
_JUDGED = ("correct", "wrong_result", "runtime_error", "syntax_error", "memory", "forbidden")


@dataclass(frozen=True)
class PythonCheck:
    candidate: str | None  # the untrusted code; None or blank -> verdict "no_code" (nothing is run)
    tests: tuple[str, ...] = ()  # test code run after it: MBPP's asserts, HumanEval's `test` (defines check)
    setup: str = ""  # MBPP's test_setup_code: runs after the candidate, before the tests
    entry_point: str | None = None  # HumanEval: `check(<entry_point>)` runs after the tests
    code_context: str | None = None  # DS-1000: defines test_execution(solution) (and maybe test_string)


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
    timeout_s: float = 10.0,
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
        key = (python_key(check.candidate), check.tests, check.setup, check.entry_point, check.code_context)
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
            "candidate": check.candidate,
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


def _verdict(run: _Run, timeout_s: float) -> Verdict:
    """The verdict from what the judge decided and how the sandbox ended; see the module docstring."""
    records = run.records
    if "setup_error" in records:
        raise RuntimeError(f"Python sandbox setup failed: {records['setup_error']['detail']}")
    if "forbidden" in records:
        return Verdict("forbidden", _one_line(f"forbidden: {records['forbidden'].get('detail')}"), run.seconds)
    outcome = run.outcome or {}
    if outcome.get("kind") in _JUDGED:
        return Verdict(outcome["kind"], _one_line(str(outcome.get("detail", ""))), run.seconds)
    finished = run.finished
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
        return Verdict("runtime_error", _one_line(f"the judge ended without a verdict: {run.judge_output}"), run.seconds)
    if finished["signal"] is None and finished["exit_code"] == 0 and "done" in records:
        return Verdict("runtime_error", _one_line(str(outcome.get("detail", ""))), run.seconds)
    if finished["signal"] is not None:
        how = f"was killed by {_signal_name(finished['signal'])}"
    else:
        how = f"exited with code {finished['exit_code']}"
    detail = f"the candidate's process {how} before its tests finished"
    if run.last_output_line():
        detail += f"; last output: {run.last_output_line()}"
    return Verdict("runtime_error", _one_line(detail), run.seconds)


# ---------------------------------------------------------------------------------------------
# Starting the sandbox and the judge


@dataclass(frozen=True)
class _Run:
    records: dict[str, dict]  # what the sandbox's runner reported: "isolation", "setup_error", "ready", "forbidden", "done"
    finished: dict | None  # how the runner ended, from the supervisor
    outcome: dict | None  # the judge's {"kind", "detail"}; None without a judge, or when it died
    output: bytes  # the end of what the candidate printed (stdout and stderr together)
    judge_output: str  # the last line the judge printed, to explain its end
    seconds: float
    supervisor_killed: bool  # the supervisor overran its time limit by _SUPERVISOR_GRACE_S
    judge_killed: bool  # the judge overran the same limit

    def last_output_line(self) -> str:
        return _last_line(self.output)


def _run(python: str, sandbox_job: dict, judge_job: dict | None, timeout_s: float) -> _Run:
    """Run the sandbox (and, with a `judge_job`, the judge) in a fresh work dir, removed afterwards.

    The work dir (mode 0711) holds the scratch dir (the candidate's working dir, owned by it), the
    judge's dir (0700) and files of the caller's (0600): the candidate reaches only the pipes it
    inherits. The runner reports on a pipe, the judge its outcome on another; the supervisor writes
    how the runner ended to a file that the runner closed. Each job goes in on stdin.
    """
    workdir = Path(tempfile.mkdtemp(prefix="codelutra-python-"))
    opened: list[int] = []
    outcome_read = -1
    try:
        scratch, judge_dir = workdir / "scratch", workdir / "judge"
        scratch.mkdir()
        judge_dir.mkdir(mode=0o700)
        if os.geteuid() == 0:  # the candidate will run as SANDBOX_UID
            workdir.chmod(0o711)
            os.chown(scratch, SANDBOX_UID, SANDBOX_UID)
        report_read, report_write = _pipe(opened)
        finished_fd = os.open(workdir / "finished", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        opened.append(finished_fd)
        sandbox_job = {
            **sandbox_job,
            "report_fd": report_write,
            "finished_fd": finished_fd,
            "scratch": str(scratch.resolve()),
            "uid": SANDBOX_UID,
            "timeout_s": timeout_s,
            "limits": {
                "cpu_s": _cpu_limit_s(timeout_s),
                "memory_bytes": MEMORY_LIMIT_BYTES,
                "file_size_bytes": FILE_SIZE_LIMIT_BYTES,
                "scratch_bytes": SCRATCH_LIMIT_BYTES,
                "processes": PROCESS_LIMIT,
            },
        }
        sandbox_fds = [report_write, finished_fd]
        if judge_job is not None:
            request_read, request_write = _pipe(opened)
            reply_read, reply_write = _pipe(opened)
            outcome_read, result_fd = _pipe(opened)
            sandbox_job.update(request_fd=request_read, reply_fd=reply_write)
            sandbox_fds += [request_read, reply_write]
            judge_job = {**judge_job, "request_fd": request_write, "reply_fd": reply_read, "result_fd": result_fd}
        started = time.monotonic()
        with open(workdir / "output", "wb", opener=_private) as output:
            sandbox = _start(python, _SANDBOX_SCRIPT, sandbox_job, sandbox_fds, scratch, output, workdir)
        judge = None
        if judge_job is not None:
            with open(workdir / "judge-output", "wb", opener=_private) as judge_output:
                judge_fds = [request_write, reply_read, result_fd]
                judge = _start(python, _JUDGE_SCRIPT, judge_job, judge_fds, judge_dir, judge_output, workdir)
        for fd in opened[:]:  # the pipes now belong to the two processes: each sees the other end
            if fd not in (report_read, outcome_read):
                os.close(fd)
                opened.remove(fd)
        deadline = started + timeout_s + _SUPERVISOR_GRACE_S
        judge_killed = judge is not None and _wait(judge, deadline - time.monotonic())
        supervisor_killed = _wait(sandbox, deadline - time.monotonic())
        seconds = time.monotonic() - started
        records = _runner_records(_drain(report_read))
        finished = next(iter(_json_lines((workdir / "finished").read_bytes())), None)
        outcome = next(iter(_json_lines(_drain(outcome_read))), None) if judge_job is not None else None
        with open(workdir / "output", "rb") as output:
            output.seek(max(0, output.seek(0, os.SEEK_END) - OUTPUT_LIMIT_BYTES))
            tail = output.read(OUTPUT_LIMIT_BYTES)
        judge_tail = _last_line((workdir / "judge-output").read_bytes()[-OUTPUT_LIMIT_BYTES:]) if judge else ""
        return _Run(records, finished, outcome, tail, judge_tail, seconds, supervisor_killed, judge_killed)
    finally:
        for fd in opened:
            os.close(fd)
        _remove_tree(workdir)


def _pipe(opened: list[int]) -> tuple[int, int]:
    read, write = os.pipe()
    opened += [read, write]
    return read, write


def _start(python: str, script: Path, job: dict, fds: list[int], cwd: Path, output, workdir: Path) -> subprocess.Popen:
    """Start `script` on `job` (on stdin, from a file in the work dir), in a session of its own."""
    with tempfile.TemporaryFile(dir=workdir) as job_file:
        job_file.write(json.dumps(job).encode())
        job_file.seek(0)
        try:
            return subprocess.Popen(
                [python, "-s", "-B", str(script)],
                stdin=job_file,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                cwd=cwd,
                env=_environment(cwd),
                start_new_session=True,
            )
        except OSError as error:
            raise RuntimeError(f"cannot start the Python sandbox with {python}: {error}") from error


def _private(path: str, flags: int) -> int:
    """Opener for files of the caller's in the work dir: readable and writable by their owner only."""
    return os.open(path, flags, 0o600)


def _environment(home_dir: Path) -> dict[str, str]:
    """All of the environment the sandbox and the judge see: nothing of the caller's but PATH.

    The interpreter runs without -I (which would ignore PYTHONHASHSEED) but with -s; as the
    environment is built here from scratch, no PYTHON* variable of the caller's gets through.
    """
    home = str(home_dir)
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",  # the same set and dict orders from run to run
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",  # candidates run side by side; one thread each is what they get
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
    }


def _wait(process: subprocess.Popen, limit_s: float) -> bool:
    """Wait for a process (the supervisor enforces the time limit itself); kill it if it overruns. True if killed."""
    try:
        process.wait(max(0.0, limit_s))
        return False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the sandbox's runner, in a session of its own, dies with it
        except ProcessLookupError:
            pass
        process.wait()
        return True


def _drain(fd: int) -> bytes:
    """What is in a pipe now, without waiting for a writer that outlived the run (a candidate's escaped process)."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _runner_records(report: bytes) -> dict[str, dict]:
    """The first report of each event; past "ready" the candidate may have written too, so only
    "forbidden" and "done" count from there (neither can turn a verdict into "correct")."""
    records: dict[str, dict] = {}
    for record in _json_lines(report):
        event = record.get("event")
        if "ready" not in records or event in ("forbidden", "done"):
            records.setdefault(event, record)
    return records


def _json_lines(data: bytes) -> list[dict]:
    found = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def _last_line(output: bytes) -> str:
    lines = output.decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


def _remove_tree(path: Path) -> None:
    """Remove the work dir, even where the candidate (running as the caller's user) took permissions away."""
    try:
        shutil.rmtree(path)
    except OSError:
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
        shutil.rmtree(path)


def _cpu_limit_s(timeout_s: float) -> int:
    """CPU seconds allowed: more than the wall-clock limit, so that it only catches several busy threads."""
    return math.ceil(timeout_s) + 1


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."
