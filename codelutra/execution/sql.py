"""Run untrusted SQL safely and judge it against the gold query by execution.

The SQL comes from a model, so it is treated as hostile. It runs:

* in worker processes, never in the caller's process (a crash or hang there cannot take the
  caller down). Each worker is a fresh interpreter that imports only `engines.worker` and the
  drivers it needs (not the caller's main module, as `multiprocessing`'s spawn and forkserver
  would), so it starts in tens of milliseconds and small, whatever the caller has loaded, and in a
  session of its own, so a Ctrl-C reaches only the caller, which then ends it;
* on the engine its database address names (`engines`: SQLite, DuckDB or PostgreSQL), connected so
  that queries can only read, under that engine's own time limit, with a wall-clock kill of the
  worker as the backstop for time spent inside one C call;
* under an address-space limit and a cap on the number of rows fetched.

Workers are reused from query to query (starting a process per query is too slow for hundreds of
candidates a second); a worker that hangs or dies is replaced and the batch goes on.

Results are compared by the scoring rule asked for (`sql_match`: this project's own by default,
or the official Spider or BIRD evaluator's). Values come from every engine as SQLite's driver gives
them (`engines.plain_value`).
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from codelutra.errors import SetupWarning, UserError
from codelutra.execution import engines
from codelutra.execution.canonical import sql_key, trim_sql
from codelutra.execution.engines import QueryResult
from codelutra.execution.engines.worker import READY
from codelutra.execution.limits import DEFAULT_TIMEOUT_S
from codelutra.execution.sql_match import judge, rule
from codelutra.execution.verdict import Verdict, one_line

# The memory limit is handed to each worker as it starts (so a test can lower it); the other limits
# live with the engines.
_WORKER_MEMORY_BYTES = 2 * 1024**3  # address space a worker may add to what it maps at start

_KILL_GRACE_S = 1.0  # how long past its time limit a query may run before its worker is killed
_STARTUP_TIMEOUT_S = 60.0  # a worker not ready by then means a broken environment

# A worker's whole program: serve queries on the socket whose descriptor is argv[1].
_WORKER_PROGRAM = (
    "import sys; from codelutra.execution.engines.worker import serve; "
    "serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])"
)
# The folder holding `codelutra`: the worker runs without site-packages (-S, faster to start) and
# needs only the standard library, this package and the drivers of the engines it serves.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class SqlCheck:
    db_path: str  # the database's address: a SQLite path, duckdb:///file or postgresql://... (see `engines`)
    gold_sql: str
    candidate_sql: str | None  # None or blank -> verdict "no_code" (nothing is run)


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
    with _SandboxPool(_pool_size(workers, len(cleaned)), _engines_for(db for db, _ in cleaned)) as pool:
        return pool.run_all(cleaned, timeout_s)


def verify_sql(
    checks: Sequence[SqlCheck],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    match: str = "execution",
) -> list[Verdict]:
    """Judge each candidate against its gold query by execution; verdicts in input order.

    `match` names the scoring rule (`sql_match.MATCH_RULES`); its rewrites apply to gold and candidate before they run.

    Each distinct program is executed once per database and its result reused (`canonical.sql_key`:
    the same query with other spacing or keyword case counts once): a gold query shared by many
    checks, a candidate sampled several times, a candidate identical to its gold.
    `progress(n)` is called with the number of checks just finished (for a progress bar).
    """
    report = progress or (lambda finished: None)
    verdicts: list[Verdict | None] = [None] * len(checks)
    queries: dict[tuple[str, str], tuple[str, str]] = {}  # (db_path, canonical form) -> the (db_path, sql) run

    scoring = rule(match)

    def key_of(db_path: str, sql: str) -> tuple[str, str]:
        sql = scoring.prepare(trim_sql(sql))
        key = (db_path, sql_key(sql))
        queries.setdefault(key, (db_path, sql))
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
    is_ordered = functools.cache(scoring.is_ordered)
    size = _pool_size(workers, len(golds) + len(checks_by_candidate))
    with _SandboxPool(size, _engines_for(db_path for db_path, _ in golds)) as pool:
        results = dict(zip(golds, pool.run_all([queries[key] for key in golds], timeout_s)))

        def settle(candidate_key: tuple[str, str], candidate: QueryResult | None) -> None:
            indexes = checks_by_candidate[candidate_key]
            for i in indexes:
                gold_key = gold_keys[i]
                verdicts[i] = judge(results[gold_key], candidate, ordered=is_ordered(queries[gold_key][1]), match=match)
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



def _pool_size(workers: int | None, queries: int) -> int:
    return max(1, min(workers or os.cpu_count() or 1, queries))


def _engines_for(addresses: Iterator[str]) -> set[str]:
    """The engines the workers must serve; checked before any worker starts.

    An address with a password, or an engine whose driver is not installed, is the user's to fix.
    A PostgreSQL role is checked once per process: a superuser is refused, a role that can write
    anything draws a warning (the read-only transaction is then the only thing between a candidate
    and the data).
    """
    needed = set()
    for address in set(addresses):
        engine = engines.engine_of(address)
        try:
            engines.check_address(address)
        except engines.BadAddress as error:
            raise UserError(f"{address}: {error}") from None
        if engine not in needed and (missing := engines.missing_driver(engine)):
            raise UserError(f"{address}: {missing}")
        needed.add(engine)
        if engine == "postgres":
            _check_postgres_role(address)
    return needed


def _check_postgres_role(address: str) -> None:
    from codelutra.execution.engines.postgres_engine import role_can_write

    try:
        role = role_can_write(address)
    except engines.Refused as refused:
        raise UserError(f"{address}: {refused} (see the README: a SELECT-only role)") from None
    except Exception as error:  # cannot connect at all: the user's server, address or password
        raise UserError(f"{address}: cannot connect to PostgreSQL: {one_line(str(error))}") from None
    if role:
        warnings.warn(
            f"{address}: PostgreSQL role {role!r} can write or create things; only the READ ONLY transaction "
            "keeps candidates from changing data. Use a SELECT-only role (see the README).",
            SetupWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# In the caller's process: the pool of workers


class _Worker:
    """One sandbox process, the connection to it, and the query it is running, if any."""

    def __init__(self, engines_served: set[str]) -> None:
        ours, theirs = socket.socketpair()
        python_path = [_PACKAGE_ROOT, *engines.driver_paths(engines_served), os.environ.get("PYTHONPATH")]
        argv = [str(theirs.fileno()), str(_WORKER_MEMORY_BYTES), ",".join(sorted(engines_served))]
        with ours, theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-S", "-c", _WORKER_PROGRAM, *argv],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stderr stays the caller's: a worker that cannot start says why there
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, python_path))},
                start_new_session=True,
            )
            self._conn = Connection(ours.detach())  # their end closes here: our end reads EOF if the worker dies
        self.query_index: int | None = None
        self.started_at = 0.0
        self.dead = False  # killed or died: to be replaced

    def wait_ready(self) -> None:
        try:
            if self._conn.poll(_STARTUP_TIMEOUT_S) and self._conn.recv() == READY:
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

    def __init__(self, size: int, engines_served: set[str]) -> None:
        self._engines = engines_served
        self._workers: list[_Worker] = []
        try:
            self._workers.extend(_Worker(engines_served) for _ in range(size))  # start them all, then wait: in parallel
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
                    self._workers[position] = _Worker(self._engines)
                    self._workers[position].wait_ready()
                yield index, result
