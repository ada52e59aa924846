"""Starting the two processes of one Python check, the sandbox and the judge, and reading what they report.

`python.py` decides the verdict from the `Run` this returns; see its docstring for the design.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

OUTPUT_LIMIT_BYTES = 64 * 1024  # how much of the candidate's output (the end) is read back, to explain a crash
SUPERVISOR_GRACE_S = 10.0  # past its time limit, how long the supervisor and the judge get before they are killed
MODULE_PATH_TIMEOUT_S = 60.0
SANDBOX_SCRIPT = Path(__file__).with_name("python_sandbox.py")
JUDGE_SCRIPT = Path(__file__).with_name("python_judge.py")


@dataclass(frozen=True)
class Run:
    records: dict[str, dict]  # what the sandbox's runner reported: "isolation", "setup_error", "ready", "forbidden", "done"
    finished: dict | None  # how the runner ended, from the supervisor
    outcome: dict | None  # the judge's {"kind", "detail"}; None without a judge, or when it died
    output: bytes  # the end of what the candidate printed (stdout and stderr together)
    judge_output: str  # the last line the judge printed, to explain its end
    seconds: float
    supervisor_killed: bool  # the supervisor overran its time limit by SUPERVISOR_GRACE_S
    judge_killed: bool  # the judge overran the same limit

    def last_output_line(self) -> str:
        return _last_line(self.output)


def run_processes(python: str, sandbox_job: dict, judge_job: dict | None, timeout_s: float) -> Run:
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
        if os.geteuid() == 0:  # the candidate will run as the sandbox's uid
            workdir.chmod(0o711)
            os.chown(scratch, sandbox_job["uid"], sandbox_job["uid"])
        report_read, report_write = _pipe(opened)
        finished_fd = os.open(workdir / "finished", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        opened.append(finished_fd)
        sandbox_job = {**sandbox_job, "report_fd": report_write, "finished_fd": finished_fd,
                       "scratch": str(scratch.resolve())}
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
            sandbox = _start(python, SANDBOX_SCRIPT, sandbox_job, sandbox_fds, scratch, output, workdir)
        judge = None
        if judge_job is not None:
            with open(workdir / "judge-output", "wb", opener=_private) as judge_output:
                judge_fds = [request_write, reply_read, result_fd]
                judge = _start(python, JUDGE_SCRIPT, judge_job, judge_fds, judge_dir, judge_output, workdir)
        for fd in opened[:]:  # the pipes now belong to the two processes: each sees the other end
            if fd not in (report_read, outcome_read):
                os.close(fd)
                opened.remove(fd)
        deadline = started + timeout_s + SUPERVISOR_GRACE_S
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
        return Run(records, finished, outcome, tail, judge_tail, seconds, supervisor_killed, judge_killed)
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
        job_file.write(json.dumps({**job, "module_path": _module_path(python)}).encode())
        job_file.seek(0)
        try:
            return subprocess.Popen(
                [python, "-S", "-s", "-B", str(script)],
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


@functools.cache
def _module_path(python: str) -> list[str]:
    """Where `python` finds modules after a normal start (site-packages, .pth dirs), asked once.

    The sandbox and the judge start without `site` (-S), which costs more than the rest of their
    start (editable installs' finders, .pth files), and are given this path instead."""
    ask = [python, "-s", "-c", "import json, sys; print(json.dumps(sys.path[1:]))"]
    try:
        found = subprocess.run(ask, check=True, capture_output=True, timeout=MODULE_PATH_TIMEOUT_S, env=_environment(Path.cwd()))
        return [path for path in json.loads(found.stdout) if isinstance(path, str)]
    except (OSError, ValueError, subprocess.SubprocessError) as error:
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
