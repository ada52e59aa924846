"""Run untrusted SQL safely and judge it against the gold query by execution.

The SQL comes from a model, so it is treated as hostile. It runs:

* in worker processes, never in the caller's process (a crash or hang there cannot take the
  caller down). Each worker is a fresh interpreter that imports only this module (not the
  caller's main module, as `multiprocessing`'s spawn and forkserver would), so it starts in tens
  of milliseconds and small, whatever the caller has loaded, and in a session of its own, so a
  Ctrl-C reaches only the caller, which then ends it;
* against databases opened read-only, behind an authorizer that lets through only reads;
* under a time limit that SQLite enforces itself (a progress handler), with a wall-clock kill of
  the worker as the backstop for time spent inside one C call;
* under an address-space limit and a cap on the number of rows fetched.

Workers are reused from query to query (starting a process per query is too slow for hundreds of
candidates a second); a worker that hangs or dies is replaced and the batch goes on.

Results are compared the way Spider's execution accuracy does (test-suite-sql-eval's
`result_eq`): as multisets of rows unless the gold query orders its output, and regardless of
column order.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from codelutra.execution.canonical import sql_key, sql_lexemes, trim_sql
from codelutra.execution.limits import DEFAULT_TIMEOUT_S
from codelutra.execution.verdict import Verdict

# Limits on one query in a worker. The memory limit is handed to each worker as it starts (so a
# test can lower it); the others the worker reads from its own import of this module.
_WORKER_MEMORY_BYTES = 2 * 1024**3  # address space a worker may add to what it maps at start
_MAX_ROWS = 100_000  # more rows than this is an error, not a result
_PROGRESS_STEPS = 1_000  # SQLite VM steps between two checks of the deadline
_OPEN_DATABASES = 8  # connections a worker keeps open

_KILL_GRACE_S = 1.0  # how long past its time limit a query may run before its worker is killed
_STARTUP_TIMEOUT_S = 60.0  # a worker not ready by then means a broken environment
_DETAIL_CHARS = 200
_SIGNIFICANT_DIGITS = 6  # floats agreeing to this many significant digits are equal
_MAX_COLUMN_PERMUTATIONS = 1_000  # column orders tried before giving up on a match

_SYNTAX_ERROR_MARKS = ("syntax error", "incomplete input", "unrecognized token")
_READ_ONLY_ERROR_MARK = "readonly database"
_FORBIDDEN = "forbidden: "  # detail prefix of a refused write or state change

# What the authorizer lets a query do: read. Everything else (writes, schema changes, ATTACH,
# PRAGMA, transactions, VACUUM INTO...) is refused.
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_FORBIDDEN_FUNCTIONS = frozenset({"load_extension"})
_ACTION_NAMES = {  # for error details: the authorizer's action codes that writes and state changes use
    getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ")
    for name in (
        "INSERT", "UPDATE", "DELETE", "CREATE_TABLE", "CREATE_INDEX", "CREATE_VIEW", "CREATE_TRIGGER",
        "CREATE_TEMP_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_VIEW", "CREATE_TEMP_TRIGGER", "CREATE_VTABLE",
        "DROP_TABLE", "DROP_INDEX", "DROP_VIEW", "DROP_TRIGGER", "DROP_TEMP_TABLE", "DROP_TEMP_INDEX",
        "DROP_TEMP_VIEW", "DROP_TEMP_TRIGGER", "DROP_VTABLE", "ALTER_TABLE", "REINDEX", "ANALYZE",
        "ATTACH", "DETACH", "PRAGMA", "TRANSACTION", "SAVEPOINT",
    )
}

_READY = "ready"
# A worker's whole program: serve queries on the socket whose descriptor is argv[1].
_WORKER_PROGRAM = "import sys; from codelutra.execution.sql import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]))"
# The folder holding `codelutra`: the worker runs without site-packages (-S, faster to start) and
# needs only the standard library and this module.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class SqlCheck:
    db_path: str
    gold_sql: str
    candidate_sql: str | None  # None or blank -> verdict "no_code" (nothing is run)


@dataclass(frozen=True)
class QueryResult:
    kind: str  # "ok" | "runtime_error" | "syntax_error" | "timeout" | "forbidden"
    rows: list[tuple] | None  # None unless kind == "ok"
    error: str  # "" when ok
    seconds: float


_NO_SQL = Verdict("no_code", "no SQL to run", 0.0)


# ---------------------------------------------------------------------------------------------
# Public entry points


def run_queries(
    queries: Sequence[tuple[str, str]], *, timeout_s: float = DEFAULT_TIMEOUT_S, workers: int | None = None
) -> list[QueryResult]:
    """Run (db_path, sql) pairs in the sandbox; results in input order. Used e.g. to check that gold queries run."""
    cleaned = [(db_path, trim_sql(sql)) for db_path, sql in queries]
    if not cleaned:
        return []
    with _SandboxPool(_pool_size(workers, len(cleaned))) as pool:
        return pool.run_all(cleaned, timeout_s)


def verify_sql(
    checks: Sequence[SqlCheck],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """Judge each candidate against its gold query by execution; verdicts in input order.

    Each distinct program is executed once per database and its result reused (`canonical.sql_key`:
    the same query with other spacing or keyword case counts once): a gold query shared by many
    checks, a candidate sampled several times, a candidate identical to its gold.
    `progress(n)` is called with the number of checks just finished (for a progress bar).
    """
    report = progress or (lambda finished: None)
    verdicts: list[Verdict | None] = [None] * len(checks)
    queries: dict[tuple[str, str], tuple[str, str]] = {}  # (db_path, canonical form) -> the (db_path, sql) run

    def key_of(db_path: str, sql: str) -> tuple[str, str]:
        key = (db_path, sql_key(sql))
        queries.setdefault(key, (db_path, trim_sql(sql)))
        return key

    gold_keys = [key_of(check.db_path, check.gold_sql) for check in checks]
    checks_by_candidate: dict[tuple[str, str], list[int]] = {}
    for index, check in enumerate(checks):
        if trim_sql(check.candidate_sql or ""):
            checks_by_candidate.setdefault(key_of(check.db_path, check.candidate_sql), []).append(index)
        else:
            verdicts[index] = _NO_SQL
    without_sql = verdicts.count(_NO_SQL)
    if without_sql:
        report(without_sql)
    if not checks_by_candidate:
        return verdicts

    golds = list(dict.fromkeys(gold_keys[i] for indexes in checks_by_candidate.values() for i in indexes))
    is_ordered = functools.cache(gold_is_ordered)
    with _SandboxPool(_pool_size(workers, len(golds) + len(checks_by_candidate))) as pool:
        results = dict(zip(golds, pool.run_all([queries[key] for key in golds], timeout_s)))

        def settle(candidate_key: tuple[str, str], candidate: QueryResult | None) -> None:
            indexes = checks_by_candidate[candidate_key]
            for i in indexes:
                gold_key = gold_keys[i]
                verdicts[i] = _judge(results[gold_key], candidate, ordered=is_ordered(queries[gold_key][1]))
            report(len(indexes))

        to_run = []
        for key, indexes in checks_by_candidate.items():
            if key in results or all(results[gold_keys[i]].kind != "ok" for i in indexes):
                settle(key, results.get(key))  # known already, or not worth running: its gold failed
            else:
                to_run.append(key)
        for position, result in pool.run([queries[key] for key in to_run], timeout_s):
            settle(to_run[position], result)
    return verdicts


def results_match(gold_rows: list[tuple], candidate_rows: list[tuple], *, ordered: bool) -> bool:
    """Spider-style execution accuracy: equal rows (as a multiset unless `ordered`), up to column order.

    Numbers compare by value (1 == 1.0) and floats to 6 significant digits (see `_normalize`).
    Column orders are pruned first: a candidate column can only stand for a gold column holding
    the same multiset of values, so usually a single order is left to try (at most 1,000 are).
    """
    if gold_rows == candidate_rows:  # the usual correct case (and two empty results), settled fast
        return True
    if len(gold_rows) != len(candidate_rows) or len(gold_rows[0]) != len(candidate_rows[0]):
        return False
    gold = [_normalize(row) for row in gold_rows]
    candidate = [_normalize(row) for row in candidate_rows]
    wanted = gold if ordered else Counter(gold)
    for order in itertools.islice(_column_orders(gold, candidate), _MAX_COLUMN_PERMUTATIONS):
        reordered = [tuple(row[column] for column in order) for row in candidate]
        if (reordered if ordered else Counter(reordered)) == wanted:
            return True
    return False


def gold_is_ordered(gold_sql: str) -> bool:
    """True when the outermost SELECT (or UNION etc.) has ORDER BY: then row order is part of the answer.

    Read off the query's lexemes: with comments and quoted texts set aside and every parenthesised
    part (subqueries, CTEs, window clauses) collapsed, an ORDER BY is left only at the top level.
    """
    lexemes = sql_lexemes(trim_sql(gold_sql))
    if lexemes is None:  # an unclosed quote: read the text as it is
        text = gold_sql
    else:
        text = "".join(" _ " if kind in ("comment", "quoted") else piece for kind, piece in lexemes)
    text = text.strip()
    while text.startswith("(") and _closing_paren(text) == len(text) - 1:  # "(SELECT ... ORDER BY ...)"
        text = text[1:-1].strip()
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"\([^()]*\)", " _ ", text)
    return re.search(r"\border\s+by\b", text, re.IGNORECASE) is not None


def _closing_paren(text: str) -> int:
    """Index of the parenthesis closing the one at text[0]; -1 if it is never closed."""
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return index
    return -1


# ---------------------------------------------------------------------------------------------
# Judging


def _judge(gold: QueryResult, candidate: QueryResult | None, *, ordered: bool) -> Verdict:
    """The verdict on one candidate; `candidate` is None only when the gold failed (it was not run)."""
    if gold.kind != "ok":
        return Verdict("runtime_error", _one_line(f"gold query failed: {gold.kind}: {gold.error}"), 0.0)
    if candidate.kind != "ok":
        return Verdict(candidate.kind, candidate.error, candidate.seconds)
    if results_match(gold.rows, candidate.rows, ordered=ordered):
        return Verdict("correct", "", candidate.seconds)
    difference = _describe_difference(gold.rows, candidate.rows, ordered=ordered)
    return Verdict("wrong_result", difference, candidate.seconds)


def _describe_difference(gold_rows: list[tuple], candidate_rows: list[tuple], *, ordered: bool) -> str:
    """One short line saying how a wrong result differs from the gold one."""
    if len(gold_rows) != len(candidate_rows):
        return f"expected {len(gold_rows)} rows, got {len(candidate_rows)}"
    if len(gold_rows[0]) != len(candidate_rows[0]):
        return f"expected {len(gold_rows[0])} columns, got {len(candidate_rows[0])}"
    if ordered and results_match(gold_rows, candidate_rows, ordered=False):
        return "same rows as the gold query but in another order (the gold query has ORDER BY)"
    gold = [_normalize(row) for row in gold_rows]
    candidate = [_normalize(row) for row in candidate_rows]
    if ordered:
        differing = ((n, g, c) for n, (g, c) in enumerate(zip(gold, candidate), 1) if g != c)
        line, expected, got = next(differing, (1, gold[0], candidate[0]))
        return _one_line(f"result differs from gold (row {line}: expected {_short(expected)}, got {_short(got)})")
    candidate_counts = Counter(candidate)
    missing = next((row for row in gold if not candidate_counts[row]), gold[0])
    return _one_line(f"result differs from gold (gold row {_short(missing)} not in the candidate's result)")


def _normalize(row: tuple) -> tuple:
    """Make values that should count as equal compare (and hash) equal.

    Floats are rounded to 6 significant digits, but never past the units digit, so that a float
    holding a whole number equals that int (1.0 == 1, 1234567.0 == 1234567). Two floats straddling
    a rounding boundary can still differ; for results computed two ways that is vanishingly rare.
    """
    return tuple(_round_float(value) if isinstance(value, float) else value for value in row)


def _round_float(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    decimals = _SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    return round(value, max(decimals, 0))


def _column_orders(gold: list[tuple], candidate: list[tuple]) -> Iterator[tuple[int, ...]]:
    """Candidate column orders worth trying: column j may stand for gold column i only when both
    hold the same multiset of values."""
    width = len(gold[0])
    gold_columns = [Counter(row[i] for row in gold) for i in range(width)]
    candidate_columns = [Counter(row[j] for row in candidate) for j in range(width)]
    choices = [[j for j in range(width) if candidate_columns[j] == gold_columns[i]] for i in range(width)]

    def extend(order: list[int]) -> Iterator[tuple[int, ...]]:
        if len(order) == width:
            yield tuple(order)
            return
        for column in choices[len(order)]:
            if column not in order:
                yield from extend([*order, column])

    return extend([])


def _short(row: tuple) -> str:
    text = repr(row)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _pool_size(workers: int | None, queries: int) -> int:
    return max(1, min(workers or os.cpu_count() or 1, queries))


# ---------------------------------------------------------------------------------------------
# Inside a worker process


def _serve(socket_fd: int, memory_bytes: int) -> None:
    """Body of a sandbox worker: run each (db_path, sql, timeout_s) received until the caller hangs up."""
    _limit_address_space(memory_bytes)
    conn = Connection(socket_fd)
    databases = _OpenDatabases()
    conn.send(_READY)
    while True:
        try:
            db_path, sql, timeout_s = conn.recv()
        except EOFError:
            return
        conn.send(_execute(databases, db_path, sql, timeout_s))


def _limit_address_space(extra_bytes: int) -> None:
    """Let the worker map at most `extra_bytes` beyond what it maps already.

    Relative rather than absolute, because what a fresh interpreter maps depends on the platform.
    """
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + extra_bytes if hard == resource.RLIM_INFINITY else min(mapped + extra_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


class _ReadOnlyAuthorizer:
    """SQLite authorizer that allows reading only, and remembers what it refused so the error can say so."""

    def __init__(self) -> None:
        self.refused = ""

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, database: str | None, trigger: str | None
    ) -> int:
        is_function = action == sqlite3.SQLITE_FUNCTION
        if action in _ALLOWED_ACTIONS and not (is_function and (arg2 or "").lower() in _FORBIDDEN_FUNCTIONS):
            return sqlite3.SQLITE_OK
        if not self.refused:
            if is_function:
                self.refused = f"function {arg2}()"
            else:
                self.refused = f"{_ACTION_NAMES.get(action, f'action {action}')} {arg1 or ''}".strip()
        return sqlite3.SQLITE_DENY


class _OpenDatabases:
    """The worker's read-only connections, kept open from query to query (opening one costs several
    times what a typical query does); the least recently used is closed past `_OPEN_DATABASES`.

    Reuse is safe because no query can change a connection: the authorizer refuses PRAGMA, ATTACH,
    temporary tables and every other change of state, and each query gets its own authorizer and
    deadline. A connection whose query failed is closed all the same, to start the next one clean.
    """

    def __init__(self) -> None:
        self._open: dict[str, sqlite3.Connection] = {}  # insertion order = least recently used first

    def get(self, db_path: str) -> sqlite3.Connection:
        conn = self._open.pop(db_path, None) or _connect_read_only(db_path)
        self._open[db_path] = conn
        if len(self._open) > _OPEN_DATABASES:
            self._open.pop(next(iter(self._open))).close()
        return conn

    def discard(self, db_path: str) -> None:
        conn = self._open.pop(db_path, None)
        if conn is not None:
            conn.close()


def _connect_read_only(db_path: str) -> sqlite3.Connection:
    """Open `db_path` so that nothing a query does can change it."""
    uri = Path(db_path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.text_factory = lambda data: data.decode("utf-8", errors="replace")  # Spider has some bad UTF-8
    conn.execute("PRAGMA query_only = ON")
    conn.execute("PRAGMA temp_store = MEMORY")  # big sorts stay under the memory limit, off the disk
    if hasattr(conn, "enable_load_extension"):  # absent when Python is built without extension loading
        conn.enable_load_extension(False)
    return conn


def _execute(databases: _OpenDatabases, db_path: str, sql: str, timeout_s: float) -> QueryResult:
    """Run one query and say how it went; never raises."""
    if not sql:
        return QueryResult("runtime_error", None, "empty query", 0.0)
    started = time.monotonic()
    deadline = started + timeout_s
    authorizer = _ReadOnlyAuthorizer()
    try:
        conn = databases.get(db_path)
        conn.set_authorizer(authorizer)
        conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
        with closing(conn.execute(sql)) as cursor:  # closed: no statement stays open between queries
            rows = cursor.fetchmany(_MAX_ROWS + 1)
    except Exception as error:  # sqlite3 errors, but also MemoryError, ValueError (NUL in the SQL)...
        databases.discard(db_path)
        seconds = time.monotonic() - started
        if seconds > timeout_s:
            return QueryResult("timeout", None, f"exceeded the {timeout_s:g} s time limit", seconds)
        kind, detail = _classify_error(error, authorizer)
        return QueryResult(kind, None, detail, seconds)
    seconds = time.monotonic() - started
    if seconds > timeout_s:  # finished, but only after a long stretch in one C call
        return QueryResult("timeout", None, f"exceeded the {timeout_s:g} s time limit", seconds)
    if len(rows) > _MAX_ROWS:
        return QueryResult("runtime_error", None, f"result too large (over {_MAX_ROWS} rows)", seconds)
    return QueryResult("ok", rows, "", seconds)


def _classify_error(error: Exception, authorizer: _ReadOnlyAuthorizer) -> tuple[str, str]:
    """(kind, detail) for a failed query."""
    if isinstance(error, MemoryError):
        return "runtime_error", "out of memory (the sandbox's memory limit)"
    message = _one_line(str(error) or type(error).__name__)
    if authorizer.refused:
        return "forbidden", _one_line(f"{_FORBIDDEN}{authorizer.refused} (the sandbox only reads)")
    if _READ_ONLY_ERROR_MARK in message:
        return "forbidden", _one_line(f"{_FORBIDDEN}{message}")
    if any(mark in message for mark in _SYNTAX_ERROR_MARKS):
        return "syntax_error", message
    return "runtime_error", message


# ---------------------------------------------------------------------------------------------
# In the caller's process: the pool of workers


class _Worker:
    """One sandbox process, the connection to it, and the query it is running, if any."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-S", "-c", _WORKER_PROGRAM, str(theirs.fileno()), str(_WORKER_MEMORY_BYTES)],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stderr stays the caller's: a worker that cannot start says why there
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))},
                start_new_session=True,
            )
            self._conn = Connection(ours.detach())  # their end closes here: our end reads EOF if the worker dies
        self.query_index: int | None = None
        self.started_at = 0.0
        self.dead = False  # killed or died: to be replaced

    def wait_ready(self) -> None:
        try:
            if self._conn.poll(_STARTUP_TIMEOUT_S) and self._conn.recv() == _READY:
                return
        except (EOFError, OSError):
            pass
        raise RuntimeError(f"SQL sandbox worker failed to start (exit code {self.process.poll()})")

    def start_query(self, index: int, db_path: str, sql: str, timeout_s: float) -> None:
        self.query_index = index
        self.started_at = time.monotonic()
        try:
            self._conn.send((db_path, sql, timeout_s))
        except OSError:
            pass  # it died while idle; `result` reports it

    def has_news(self, ready: set, now: float, timeout_s: float) -> bool:
        """Whether `result` has something to report: a reply or a death (both wake the connection),
        or a hang past the kill time."""
        return self._conn in ready or now > self.started_at + timeout_s + _KILL_GRACE_S

    def result(self, timeout_s: float) -> QueryResult:
        """The running query's result: its own, a timeout if the worker is stuck (it is then killed),
        or an error if the worker died. Call only when `has_news`."""
        elapsed = time.monotonic() - self.started_at
        if self._conn.poll():
            try:
                return self._conn.recv()
            except (EOFError, OSError):
                pass  # died before or while replying
        elif self.process.poll() is None:
            self.process.kill()
            self.process.wait()
            self.dead = True
            return QueryResult("timeout", None, f"exceeded the {timeout_s:g} s time limit (worker killed)", elapsed)
        self.process.wait()
        self.dead = True
        death = f"sandbox worker died while running the query (exit code {self.process.returncode}: crash or memory kill)"
        return QueryResult("runtime_error", None, death, elapsed)

    def wait_handles(self) -> list:
        return [self._conn]

    def stop(self) -> None:
        """End the worker now: it holds nothing to save (the databases are read-only)."""
        self._conn.close()
        self.process.kill()
        self.process.wait()


class _SandboxPool:
    """Workers that each run one query at a time; a worker that hangs or dies is replaced."""

    def __init__(self, size: int) -> None:
        self._workers: list[_Worker] = []
        try:
            self._workers.extend(_Worker() for _ in range(size))  # start them all, then wait: in parallel
            for worker in self._workers:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> _SandboxPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()

    def run_all(self, queries: Sequence[tuple[str, str]], timeout_s: float) -> list[QueryResult]:
        """Results of (db_path, sql) pairs, in input order."""
        results: list[QueryResult | None] = [None] * len(queries)
        for index, result in self.run(queries, timeout_s):
            results[index] = result
        return results

    def run(self, queries: Sequence[tuple[str, str]], timeout_s: float) -> Iterator[tuple[int, QueryResult]]:
        """Yield (index in `queries`, result) for each (db_path, sql) pair as it finishes."""
        waiting = deque(enumerate(queries))
        while True:
            for worker in self._workers:
                if worker.query_index is None and waiting:
                    index, (db_path, sql) = waiting.popleft()
                    worker.start_query(index, db_path, sql, timeout_s)
            busy = [worker for worker in self._workers if worker.query_index is not None]
            if not busy:
                return
            next_kill = min(worker.started_at for worker in busy) + timeout_s + _KILL_GRACE_S
            handles = [handle for worker in busy for handle in worker.wait_handles()]
            ready = set(wait(handles, max(next_kill - time.monotonic(), 0.0)))
            now = time.monotonic()
            for position, worker in enumerate(self._workers):
                if worker.query_index is None or not worker.has_news(ready, now, timeout_s):
                    continue
                result = worker.result(timeout_s)
                index, worker.query_index = worker.query_index, None
                if worker.dead:
                    worker.stop()
                    self._workers[position] = _Worker()
                    self._workers[position].wait_ready()
                yield index, result
