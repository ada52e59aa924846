"""Run untrusted Python (MBPP, HumanEval and DS-1000 candidates) and judge it by its tests.

The code comes from a model, so it is treated as hostile. Each candidate runs in a process of its
own, started fresh from the interpreter (`python=`, the caller's by default) running a small
driver script (`_DRIVER`, at the end of this module). The driver forks in two:

* the supervisor enters new namespaces, then waits for the runner, kills it at the time limit
  and reports how it ended. It never runs candidate code;
* the runner locks itself down, runs the candidate, its setup code and its tests, and reports the
  outcome.

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

When "correct" is given: the runner reports "correct" only after it has run the candidate, the
setup code and every test without an exception; each report carries a random nonce that only the
driver is told, so an early `sys.exit(0)` or `os._exit(0)`, a killed process or anything the
candidate writes itself never reads as a pass. What the sandbox cannot stop, like every
assert-based harness that runs tests in the candidate's interpreter (HumanEval's, MBPP's,
evalplus's, DS-1000's): a candidate that games the tests from inside (an object equal to
everything, monkeypatching a function the tests call, such as `math.isclose` or pandas'
`assert_frame_equal`) or that digs the nonce out of the driver's frames. Rebinding names in
`builtins`, `AssertionError`, `exec`, or this driver's globals does not help it: the driver holds
its own references.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import secrets
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
from codelutra.execution.limits import DEFAULT_TIMEOUT_S
from codelutra.execution.verdict import NO_CODE, Verdict

# Limits on one candidate, read at each call (a test may lower them).
MEMORY_LIMIT_BYTES = 2 * 1024**3  # address space of each of its processes (RLIMIT_AS)
FILE_SIZE_LIMIT_BYTES = 16 * 1024**2  # largest file it may write, its output included (RLIMIT_FSIZE)
SCRATCH_LIMIT_BYTES = 64 * 1024**2  # size of its scratch dir, where that is a private tmpfs
PROCESS_LIMIT = 64  # processes and threads of SANDBOX_UID (RLIMIT_NPROC); only when it runs as that uid
OUTPUT_LIMIT_BYTES = 64 * 1024  # how much of its output (the end) is read back, to explain a crash
SANDBOX_UID = 65534  # "nobody": the uid (and gid) candidates run as when the caller is root

_SUPERVISOR_GRACE_S = 10.0  # past its time limit, how long the supervisor gets before it is killed
_PROBE_TIMEOUT_S = 60.0
_DETAIL_CHARS = 200
_LEVELS = ("network", "filesystem", "user", "processes")


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
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    python: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """Run each candidate with its tests in the sandbox; verdicts in input order.

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
    run = _run_sandbox(python, {"probe": True, "expect": None, "check": None}, _PROBE_TIMEOUT_S)
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
    job = {
        "probe": False,
        "expect": {level: getattr(expected, level) for level in _LEVELS},
        "check": {
            "candidate": check.candidate,
            "tests": list(check.tests),
            "setup": check.setup or "",
            "entry_point": check.entry_point,
            "code_context": check.code_context,
        },
    }
    run = _run_sandbox(python, job, timeout_s)
    return _judge(run, timeout_s)


def _judge(run: _SandboxRun, timeout_s: float) -> Verdict:
    """The verdict from what the driver reported; see the module docstring for when it is "correct"."""
    records = run.records
    if "setup_error" in records:
        raise RuntimeError(f"Python sandbox setup failed: {records['setup_error']['detail']}")
    if "forbidden" in records:
        return Verdict("forbidden", _one_line(f"forbidden: {records['forbidden'].get('detail')}"), run.seconds)
    if "outcome" in records:
        outcome = records["outcome"]
        return Verdict(outcome["kind"], _one_line(str(outcome.get("detail", ""))), run.seconds)
    finished = records.get("finished")
    if run.supervisor_killed or finished is None:
        how = "was killed" if run.supervisor_killed else "died"
        return Verdict("runtime_error", f"the sandbox's supervisor {how} (the candidate did not finish)", run.seconds)
    if finished["cpu_exceeded"]:
        return Verdict("timeout", f"exceeded the {_cpu_limit_s(timeout_s)} s CPU time limit", run.seconds)
    if finished["timed_out"]:
        return Verdict("timeout", f"exceeded the {timeout_s:g} s time limit", run.seconds)
    if finished["signal"] is not None:
        how = f"was killed by {_signal_name(finished['signal'])}"
    else:
        how = f"exited with code {finished['exit_code']}"
    detail = f"the candidate's process {how} before its tests finished"
    if run.last_output_line():
        detail += f"; last output: {run.last_output_line()}"
    return Verdict("runtime_error", _one_line(detail), run.seconds)


# ---------------------------------------------------------------------------------------------
# Starting the driver


@dataclass(frozen=True)
class _SandboxRun:
    records: dict[str, dict]  # the first authentic report of each event ("outcome", "finished", ...)
    output: bytes  # the end of what the candidate printed (stdout and stderr together)
    seconds: float
    supervisor_killed: bool  # the supervisor itself overran its time limit by _SUPERVISOR_GRACE_S

    def last_output_line(self) -> str:
        lines = self.output.decode("utf-8", errors="replace").strip().splitlines()
        return lines[-1].strip() if lines else ""


def _run_sandbox(python: str, job: dict, timeout_s: float) -> _SandboxRun:
    """Run the driver on `job` in a fresh work dir, removed afterwards; return what it reported.

    The work dir (mode 0711) holds the scratch dir (the candidate's working dir, owned by it)
    beside the report and output files (mode 0600), which the candidate reaches only through
    the write-only file descriptors it inherits. The job goes in on stdin, which the driver
    replaces with /dev/null once read.
    """
    nonce = secrets.token_hex(16)
    workdir = Path(tempfile.mkdtemp(prefix="codelutra-python-"))
    try:
        scratch = workdir / "scratch"
        scratch.mkdir()
        if os.geteuid() == 0:  # the candidate will run as SANDBOX_UID
            workdir.chmod(0o711)
            os.chown(scratch, SANDBOX_UID, SANDBOX_UID)
        with (
            tempfile.TemporaryFile(dir=workdir) as job_file,
            open(workdir / "report", "ab", opener=_private) as report,
            open(workdir / "output", "wb", opener=_private) as output,
        ):
            job = {
                **job,
                "nonce": nonce,
                "report_fd": report.fileno(),
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
            job_file.write(json.dumps(job).encode())
            job_file.seek(0)
            started = time.monotonic()
            try:
                process = subprocess.Popen(
                    [python, "-s", "-B", "-c", _DRIVER],
                    stdin=job_file,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    pass_fds=(report.fileno(),),
                    cwd=scratch,
                    env=_environment(scratch),
                    start_new_session=True,
                )
            except OSError as error:
                raise RuntimeError(f"cannot start the Python sandbox with {python}: {error}") from error
            supervisor_killed = _wait(process, timeout_s + _SUPERVISOR_GRACE_S)
            seconds = time.monotonic() - started
        records = _authentic_records((workdir / "report").read_bytes(), nonce)
        with open(workdir / "output", "rb") as output:
            output.seek(max(0, output.seek(0, os.SEEK_END) - OUTPUT_LIMIT_BYTES))
            tail = output.read(OUTPUT_LIMIT_BYTES)
        return _SandboxRun(records, tail, seconds, supervisor_killed)
    finally:
        _remove_tree(workdir)


def _private(path: str, flags: int) -> int:
    """Opener for files of the caller's in the work dir: readable and writable by their owner only."""
    return os.open(path, flags, 0o600)


def _environment(scratch: Path) -> dict[str, str]:
    """All of the environment the candidate sees: nothing of the caller's but PATH.

    The interpreter runs without -I (which would ignore PYTHONHASHSEED) but with -s; as the
    environment is built here from scratch, no PYTHON* variable of the caller's gets through.
    """
    home = str(scratch)
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
    """Wait for the supervisor (it enforces the time limit itself); kill it if it overruns. True if killed."""
    try:
        process.wait(limit_s)
        return False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the runner, in a session of its own, dies with it
        except ProcessLookupError:
            pass
        process.wait()
        return True


def _authentic_records(report: bytes, nonce: str) -> dict[str, dict]:
    """The first report of each event that carries the nonce; lines the candidate wrote itself do not."""
    records: dict[str, dict] = {}
    for line in report.splitlines():
        if nonce.encode() not in line:
            continue
        try:
            record = ast.literal_eval(line.decode("utf-8", errors="replace"))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(record, dict) and record.pop("nonce", None) == nonce:
            records.setdefault(record.get("event"), record)
    return records


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


# ---------------------------------------------------------------------------------------------
# The driver, run by the sandbox's interpreter as `python -s -B -c _DRIVER`. Standard library only,
# and Python 3.8+: that interpreter may be another environment's.

_DRIVER = r'''
import ctypes, json, os, re, resource, signal, stat, sys

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 0x1, 0x2, 0x4, 0x8, 0x20
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 0x400, 0x800, 0x1000, 0x2000, 0x4000
MS_PRIVATE, MS_RELATIME = 0x40000, 0x200000
KEPT_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                    "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "busybox"})
WRITABLE_DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
NETWORK_EVENTS = ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                  "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo")

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class SandboxViolation(PermissionError):
    """Raised in the candidate when it attempts what the sandbox forbids."""


def main():
    job = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the job, nonce included, is not left for the candidate to read
    os.close(devnull)
    sys.path[:] = [path for path in sys.path if path not in ("", ".")]  # -c put the scratch dir first
    report = reporter(job["report_fd"], job["nonce"])
    profile, notes = enter_namespaces()
    runner = os.fork()
    if runner == 0:
        run(job, profile, notes, report)
    supervise(runner, job, report)


def reporter(fd, nonce, write=os.write, repr=repr):
    """report(event, **fields): one line on the report fd, a Python literal with the nonce.

    Built from what cannot be rebound by name (repr of plain values, os.write captured now), so a
    candidate that patches json or os cannot change what is written."""
    def report(event, **fields):
        fields["event"], fields["nonce"] = event, nonce
        write(fd, ("\n" + repr(fields) + "\n").encode("utf-8", "backslashreplace"))
    return report


# --- The supervisor ------------------------------------------------------------------------


def enter_namespaces():
    """Unshare what this process may, for the runner it forks next; returns (profile, notes).

    "full" (root): mount, network, PID and IPC namespaces. "user": a user namespace with network
    and PID namespaces, for a caller without root where that is allowed. "none": nothing."""
    notes = []
    for profile, flags in (("full", CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC),
                           ("user", CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID)):
        if libc.unshare(flags) == 0:
            return profile, notes
        notes.append("unshare (%s): %s" % (profile, os.strerror(ctypes.get_errno())))
    return "none", notes


def supervise(runner, job, report):
    """Wait for the runner, kill it at the time limit, report how it ended. Runs no candidate code."""
    timed_out = []

    def kill_runner():
        for send in (os.kill, os.killpg):  # the runner, and its process group (it leads its own session)
            try:
                send(runner, signal.SIGKILL)
            except OSError:
                pass

    def on_time_limit(signum, frame):
        timed_out.append(True)
        kill_runner()

    signal.signal(signal.SIGALRM, on_time_limit)
    signal.setitimer(signal.ITIMER_REAL, job["timeout_s"])
    os.waitid(os.P_PID, runner, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped: its pid is still its own
    signal.setitimer(signal.ITIMER_REAL, 0)
    kill_runner()  # what it left running, where no PID namespace ended with it
    _, status, usage = os.wait4(runner, 0)
    killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    cpu_exceeded = (killed_by in (signal.SIGKILL, signal.SIGXCPU)
                    and usage.ru_utime + usage.ru_stime >= job["limits"]["cpu_s"] - 0.5)
    report("finished", exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, signal=killed_by,
           timed_out=bool(timed_out), cpu_exceeded=cpu_exceeded)
    os._exit(0)


# --- The runner: lock-down -------------------------------------------------------------------


def run(job, profile, notes, report):
    """The runner's whole life: lock down, then run the check (or, probing, say how locked down it is)."""
    os.setsid()  # its own session and process group: what the supervisor kills
    try:
        levels = lock_down(job, profile, notes)
    except Exception as error:  # e.g. a hard limit below ours, for a caller without root
        report("setup_error", detail="lock-down failed: %s: %s" % (type(error).__name__, error))
        os._exit(0)
    achieved = {name: levels[name] for name in ("network", "filesystem", "user", "processes")}
    if job["probe"]:
        report("isolation", **levels)
    elif achieved != job["expect"]:
        report("setup_error", detail="sandbox is %r, expected %r (%s)" % (achieved, job["expect"], "; ".join(notes)))
    else:
        guard(job["scratch"], report)
        run_check(job["check"], report)
        for stream in (sys.stdout, sys.stderr):  # what it printed, for the caller to quote (os._exit drops it)
            try:
                stream.flush()
            except Exception:
                pass
    os._exit(0)


def lock_down(job, profile, notes):
    """Confine this process as far as it may; returns the levels achieved (as in Isolation) and notes."""
    scratch, uid, limits = job["scratch"], job["uid"], job["limits"]
    namespaced = profile != "none"
    levels = {"network": "namespace" if namespaced else "guard", "filesystem": "permissions",
              "user": "caller", "processes": "pid namespace" if namespaced else "session", "notes": notes}
    is_root = os.geteuid() == 0 and profile != "user"
    if profile == "full":
        try:
            mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted from here on is seen outside
            make_mounts_read_only()
            mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace's
            mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,mode=0700" % limits["scratch_bytes"])
            expose_interpreter(staging=scratch)
            os.chdir(scratch)  # the tmpfs, not the directory under it
            levels["filesystem"] = "read-only"
        except OSError as error:
            notes.append("mounts: %s" % error)
    drop_user = False
    if is_root:
        unreachable = [path for path in interpreter_dirs() if not reachable_by_others(path)]
        if closed_ancestor(os.path.dirname(scratch)) is not None:
            unreachable.append(scratch)
        drop_user = not unreachable
        if unreachable:
            notes.append("uid %d cannot read %s" % (uid, unreachable[0]))

    set_limit(resource.RLIMIT_CPU, limits["cpu_s"])
    set_limit(resource.RLIMIT_AS, limits["memory_bytes"])
    set_limit(resource.RLIMIT_FSIZE, limits["file_size_bytes"])
    set_limit(resource.RLIMIT_CORE, 0)
    if drop_user:
        os.chown(scratch, uid, uid)
        set_limit(resource.RLIMIT_NPROC, limits["processes"])
    call(libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if drop_user:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to another uid: every capability goes
        levels["user"] = "uid %d" % uid
    call(libc.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    return levels


def set_limit(limit, value):
    """Set both the soft and hard limit to `value`, or to the hard limit already there if lower."""
    _, hard = resource.getrlimit(limit)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, value))


def call(function, *args):
    if function(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "%s%r: %s" % (function.__name__, args, os.strerror(errno)))


def mount(source, target, fstype, flags, data=None):
    encode = lambda text: None if text is None else os.fsencode(text)
    call(libc.mount, encode(source), encode(target), encode(fstype), flags, encode(data))


def make_mounts_read_only():
    """Remount every mount read-only, keeping its other flags (in this mount namespace only)."""
    with open("/proc/self/mountinfo") as mountinfo:
        lines = mountinfo.read().splitlines()
    for line in lines:
        fields = line.split()
        target = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), fields[4])
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in fields[5].split(","):
            flags |= KEPT_MOUNT_FLAGS.get(option, 0)
        try:
            mount(None, target, None, flags)
        except FileNotFoundError:
            pass  # hidden under another mount: out of reach anyway


def interpreter_dirs():
    """The directories this interpreter loads code from."""
    dirs = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *sys.path}
    return sorted({os.path.realpath(path) for path in dirs if path and os.path.isdir(path)})


def closed_ancestor(path):
    """The first directory on the way to `path` (itself included) that other users cannot pass through."""
    parts = path.split("/")
    for end in range(2, len(parts) + 1):
        directory = "/".join(parts[:end])
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            return directory
    return None


def reachable_by_others(path):
    return closed_ancestor(path) is None and bool(os.stat(path).st_mode & stat.S_IROTH)


def expose_interpreter(staging):
    """Let other users reach the interpreter's directories where a closed directory is on the way
    (Python under /root, mode 0700): cover that directory, in this mount namespace only, with a
    read-only tmpfs holding just the way through, the interpreter's own subtrees bound back in."""
    for _ in range(8):  # a directory bound back in may hold another closed one
        ways = {}  # closed directory -> its entries on the way to interpreter directories
        for path in interpreter_dirs():
            closed = closed_ancestor(path)
            if closed is not None and closed != path:
                ways.setdefault(closed, set()).add(closed + "/" + path[len(closed) + 1:].split("/")[0])
        if not ways:
            return
        for closed, entries in ways.items():
            stages = []
            for number, entry in enumerate(sorted(entries)):
                stage = os.path.join(staging, ".stage-%d" % number)
                os.mkdir(stage)
                mount(entry, stage, None, MS_BIND | MS_REC)
                stages.append((stage, entry))
            mount("tmpfs", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0711")
            for stage, entry in stages:
                os.mkdir(entry)
                mount(stage, entry, None, MS_MOVE)
                os.rmdir(stage)
            mount(None, closed, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


# --- The runner: guard and check -------------------------------------------------------------


def guard(scratch, report, SandboxViolation=SandboxViolation):
    """Refuse, and report once, what a candidate may not do: an audit hook on the calls Python makes."""
    reported = []

    def outside(path):
        """The resolved path if it is outside the scratch dir, else None."""
        if path is None or isinstance(path, int):  # a file descriptor: opened already
            return None
        path = os.fsdecode(path)
        if path in WRITABLE_DEVICES:
            return None
        real = os.path.realpath(path)
        return None if real == scratch or real.startswith(scratch + "/") else real

    def changing(*positions):
        def check(args):
            for position in positions:
                where = outside(args[position])
                if where:
                    return "changing %s, outside the scratch dir" % where
        return check

    def opening(args):
        where = outside(args[0]) if args[2] & WRITE_FLAGS else None
        if where:
            return "writing %s, outside the scratch dir" % where

    def running(position):
        def check(args):
            program = os.path.basename(os.fsdecode(args[position]))
            if program in SHELLS:
                return "running a shell (%s)" % program
        return check

    def signalling(args):
        target = args[0]
        if target == -1:
            return "sending a signal to every process it may"
        if target in (0, os.getpid(), -os.getpgrp()):  # its own process group, itself
            return None
        try:
            if target > 0 and os.getsid(target) == os.getsid(0):
                return None
        except OSError:
            pass
        return "sending a signal to process %d, outside the sandbox" % target

    def signalling_group(args):
        if args[0] not in (0, os.getpgrp()):
            return "sending a signal to process group %d, outside the sandbox" % args[0]

    checks = {
        "open": opening,
        "os.remove": changing(0), "os.rmdir": changing(0), "os.mkdir": changing(0), "os.chmod": changing(0),
        "os.chown": changing(0), "os.truncate": changing(0), "os.utime": changing(0), "shutil.rmtree": changing(0),
        "os.rename": changing(0, 1), "os.link": changing(1), "os.symlink": changing(1),
        "os.system": lambda args: "running a shell command",
        "subprocess.Popen": running(0), "os.exec": running(0), "os.posix_spawn": running(0), "os.spawn": running(1),
        "os.kill": signalling, "os.killpg": signalling_group,
    }
    for event in NETWORK_EVENTS:
        checks[event] = lambda args, event=event: "network access (%s)" % event

    def hook(event, args):
        check = checks.get(event)
        if check is None:
            return
        try:
            problem = check(args)
        except Exception:
            problem = None  # arguments the call itself will reject
        if problem:
            if not reported:
                reported.append(problem)
                report("forbidden", detail=problem)
            raise SandboxViolation("forbidden by the sandbox: " + problem)

    sys.addaudithook(hook)


def run_check(check, report, exec=exec, compile=compile, isinstance=isinstance, enumerate=enumerate,
              settrace=sys.settrace, setprofile=sys.setprofile, BaseException=BaseException,
              AssertionError=AssertionError, MemoryError=MemoryError, SandboxViolation=SandboxViolation):
    """Run the candidate, then its setup code and tests; report the outcome.

    What it uses once the candidate has started is bound here, as defaults, before that: the
    candidate may rebind names in builtins, in modules and in this script's globals."""
    sources = {}  # file name -> source, to quote the line that failed
    namespace, context = {}, {}

    def compiled(source, filename):
        sources[filename] = source
        return compile(source, filename, "exec", dont_inherit=True, optimize=0)  # asserts kept

    stage, in_tests = "compile", False
    try:
        if check["code_context"] is None:
            candidate = compiled(check["candidate"], "<candidate>")
            # Not "__main__": demo code under `if __name__ == "__main__":`, which often reads stdin, stays out.
            namespace["__name__"] = "__candidate__"
            stage = "the candidate"
            exec(candidate, namespace)
            settrace(None)  # a tracer left behind could jump over test lines
            setprofile(None)
            stage = "the setup code"
            exec(compiled(check["setup"], "<setup>"), namespace)
            in_tests = True
            for number, test in enumerate(check["tests"], 1):
                stage = "test %d" % number
                exec(compiled(test, "<test %d>" % number), namespace)
            if check["entry_point"]:
                stage = "check(%s)" % check["entry_point"]
                exec(compiled(stage, "<check>"), namespace)
        else:
            stage = "the code_context"
            context["__name__"] = "__code_context__"
            exec(compiled(check["code_context"], "<code_context>"), context)
            template = context.get("exec_context")
            if isinstance(template, str) and "[insert]" in template:  # DS-1000 inserts the solution there
                stage = "compile"
                compile(template.replace("[insert]", check["candidate"]), "<candidate>", "exec", dont_inherit=True)
            in_tests = True
            stage = "test_execution"
            context["test_execution"](check["candidate"])
            if "test_string" in context:
                stage = "test_string"
                context["test_string"](check["candidate"])
    except BaseException as error:
        if isinstance(error, MemoryError):
            namespace.clear()  # free what the candidate holds, to have room to report
            context.clear()
            report("outcome", kind="memory", detail="MemoryError (in %s)" % stage)
            return
        if isinstance(error, SandboxViolation):
            kind = "forbidden"
        elif stage == "compile":
            kind = "syntax_error"
        elif in_tests and isinstance(error, AssertionError):
            kind = "wrong_result"
        else:
            kind = "runtime_error"
        report("outcome", kind=kind, detail=explain(kind, stage, error, sources))
        return
    report("outcome", kind="correct", detail="")


def explain(kind, stage, error, sources):
    """One line on what went wrong (the caller shortens it)."""
    try:
        message = str(error)[:500]
    except Exception:
        message = "(unprintable)"
    name = type(error).__name__
    text = "%s: %s" % (name, message) if message else name
    line = failing_line(error, sources)
    if kind == "syntax_error":
        return text
    if kind == "wrong_result":
        return "%s failed: %s" % (stage, line or text) + (" (%s)" % message if line and message else "")
    return "%s (in %s%s)" % (text, stage, ", at: " + line if line else "")


def failing_line(error, sources):
    """The deepest line of the candidate, setup or test code in the traceback."""
    line, traceback = "", error.__traceback__
    while traceback is not None:
        lines = sources.get(traceback.tb_frame.f_code.co_filename, "").splitlines()
        if 0 < traceback.tb_lineno <= len(lines):
            line = lines[traceback.tb_lineno - 1].strip()
        traceback = traceback.tb_next
    return line


main()
'''
