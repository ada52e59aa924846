"""Body of a SQL sandbox worker process: receive (address, sql, timeout_s), run it on the engine the
address names, send back a QueryResult; until the caller hangs up.

The worker imports the drivers it was told it will need before it limits its address space (the
limit is relative to what it maps at that point, so a driver's own size does not count against queries).
"""

from __future__ import annotations

import os
import resource
import time
from multiprocessing.connection import Connection

from codelutra.execution.engines import MAX_ROWS, QueryResult, Refused, engine_of
from codelutra.execution.verdict import one_line

READY = "ready"
_OPEN_DATABASES = 8  # connections a worker keeps open


def serve(socket_fd: int, memory_bytes: int, engines: str) -> None:
    """Serve queries on the socket `socket_fd`; `engines` is a comma-separated list of the engines to load."""
    opener = {engine: _opener(engine) for engine in engines.split(",") if engine}
    _limit_address_space(memory_bytes)
    conn = Connection(socket_fd)
    databases = _OpenDatabases(opener)
    conn.send(READY)
    while True:
        try:
            address, sql, timeout_s = conn.recv()
        except EOFError:
            return
        conn.send(execute(databases, address, sql, timeout_s))


def _opener(engine: str):
    """The class that opens a database of `engine` (importing its driver now)."""
    if engine == "sqlite":
        from codelutra.execution.engines.sqlite_engine import SqliteDatabase

        return SqliteDatabase
    if engine == "duckdb":
        from codelutra.execution.engines.duckdb_engine import DuckdbDatabase

        return DuckdbDatabase
    if engine == "postgres":
        from codelutra.execution.engines.postgres_engine import PostgresDatabase

        return PostgresDatabase
    raise ValueError(f"unknown engine {engine!r}")


def _limit_address_space(extra_bytes: int) -> None:
    """Let the worker map at most `extra_bytes` beyond what it maps already.

    Relative rather than absolute, because what a fresh interpreter maps depends on the platform.
    """
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + extra_bytes if hard == resource.RLIM_INFINITY else min(mapped + extra_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


class _OpenDatabases:
    """The worker's connections, kept open from query to query (opening one costs several times what a
    typical query does); the least recently used is closed past `_OPEN_DATABASES`. A connection whose
    query failed is closed all the same, to start the next one clean."""

    def __init__(self, opener: dict) -> None:
        self._opener = opener
        self._open: dict[str, object] = {}  # insertion order = least recently used first

    def get(self, address: str):
        database = self._open.pop(address, None)
        if database is None:
            engine = engine_of(address)
            if engine not in self._opener:
                raise RuntimeError(f"this worker was not started for {engine} databases")
            database = self._opener[engine](address)
        self._open[address] = database
        if len(self._open) > _OPEN_DATABASES:
            self._open.pop(next(iter(self._open))).close()
        return database

    def discard(self, address: str) -> None:
        database = self._open.pop(address, None)
        if database is not None:
            try:
                database.close()
            except Exception:  # a connection already broken: nothing left to close
                pass


def execute(databases: _OpenDatabases, address: str, sql: str, timeout_s: float) -> QueryResult:
    """Run one query and say how it went; never raises."""
    if not sql:
        return QueryResult("runtime_error", None, "empty query", 0.0)
    started = time.monotonic()
    database = None
    try:
        database = databases.get(address)
        rows = database.fetch(sql, timeout_s)
    except Exception as error:  # driver errors, but also MemoryError, ValueError (NUL in the SQL)...
        databases.discard(address)
        seconds = time.monotonic() - started
        if isinstance(error, MemoryError):
            return QueryResult("runtime_error", None, "out of memory (the sandbox's memory limit)", seconds)
        kind, detail = database.classify(error) if database is not None else _classify_open_error(error)
        if kind != "forbidden" and seconds > timeout_s:
            return QueryResult("timeout", None, f"exceeded the {timeout_s:g} s time limit", seconds)
        return QueryResult(kind, None, detail, seconds)
    seconds = time.monotonic() - started
    if seconds > timeout_s:  # finished, but only after a long stretch in one C call
        return QueryResult("timeout", None, f"exceeded the {timeout_s:g} s time limit", seconds)
    if len(rows) > MAX_ROWS:
        return QueryResult("runtime_error", None, f"result too large (over {MAX_ROWS} rows)", seconds)
    return QueryResult("ok", rows, "", seconds)


def _classify_open_error(error: Exception) -> tuple[str, str]:
    message = one_line(str(error) or type(error).__name__)
    return ("forbidden" if isinstance(error, Refused) else "runtime_error"), message
