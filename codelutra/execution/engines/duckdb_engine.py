"""DuckDB in a sandbox worker: a read-only connection with external access off and its configuration
locked, memory, thread and spill limits, exactly one SELECT statement per query (DuckDB's own parser
says which), and a deadline kept by interrupting the connection from a timer thread."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from codelutra.execution.engines import MAX_ROWS, Refused, local_file, plain_rows
from codelutra.execution.verdict import one_line

# No files, no network, no extensions, no spilling to disk (`temp_directory` ''), nothing re-settable.
_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_unsigned_extensions": False,
    "temp_directory": "",
    "memory_limit": "1GB",
    "threads": 1,
    "lock_configuration": True,  # last: locks what comes before it
}
_NOT_ONE_SELECT = "forbidden: only one SELECT statement (SELECT, WITH, VALUES, FROM ...) runs in the sandbox"
_FORBIDDEN_MARKS = ("read-only mode", "configuration has been locked", "disabled by configuration", "disabled through configuration")


class DuckdbDatabase:
    """One read-only connection, reused from query to query: only SELECT statements run, and they change nothing."""

    def __init__(self, address: str) -> None:
        path = Path(local_file(address))
        if not path.is_file():  # DuckDB would create a new, empty database there
            raise FileNotFoundError(f"DuckDB database not found: {path}")
        self._conn = duckdb.connect(str(path), read_only=True, config=dict(_CONFIG))

    def fetch(self, sql: str, timeout_s: float) -> list[tuple]:
        statements = duckdb.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise Refused(_NOT_ONE_SELECT)
        timer = threading.Timer(timeout_s, self._conn.interrupt)
        timer.start()
        try:
            rows = self._conn.execute(sql).fetchmany(MAX_ROWS + 1)
        finally:
            timer.cancel()
        return plain_rows(rows)

    def classify(self, error: Exception) -> tuple[str, str]:
        message = one_line(str(error) or type(error).__name__)
        if isinstance(error, Refused):
            return "forbidden", message
        if isinstance(error, duckdb.InterruptException):
            return "timeout", message
        if isinstance(error, duckdb.PermissionException) or any(mark in message for mark in _FORBIDDEN_MARKS):
            return "forbidden", one_line(f"forbidden: {message}")
        if isinstance(error, duckdb.ParserException):
            return "syntax_error", message
        return "runtime_error", message

    def close(self) -> None:
        self._conn.close()
