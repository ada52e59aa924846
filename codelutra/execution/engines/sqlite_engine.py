"""SQLite in a sandbox worker: a read-only connection, an authorizer that lets through only reads, and a
deadline that SQLite checks itself (a progress handler)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from codelutra.execution.engines import MAX_ROWS
from codelutra.execution.verdict import one_line

_PROGRESS_STEPS = 1_000  # SQLite VM steps between two checks of the deadline

_SYNTAX_ERROR_MARKS = ("syntax error", "incomplete input", "unrecognized token")
_READ_ONLY_ERROR_MARK = "readonly database"
FORBIDDEN = "forbidden: "  # detail prefix of a refused write or state change

# What the authorizer lets a query do: read. Everything else (writes, schema changes, ATTACH,
# PRAGMA, transactions, VACUUM INTO...) is refused, except the pragmas below.
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Pragmas that only read the schema, usable as tables (`SELECT * FROM pragma_table_info('t')`). Their
# virtual tables are made once as the connection opens, before the authorizer is set: the first use
# of one on a connection registers it in the schema, which the authorizer would see as an UPDATE of
# sqlite_master.
_READ_ONLY_PRAGMAS = ("table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list")
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


class _ReadOnlyAuthorizer:
    """SQLite authorizer that allows reading only, and remembers what it refused so the error can say so."""

    def __init__(self) -> None:
        self.refused = ""
        self._in_select = None  # whether the statement's first action is a SELECT

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, database: str | None, trigger: str | None
    ) -> int:
        if self._in_select is None:
            self._in_select = action == sqlite3.SQLITE_SELECT
        is_function = action == sqlite3.SQLITE_FUNCTION
        if action in _ALLOWED_ACTIONS and not (is_function and (arg2 or "").lower() in _FORBIDDEN_FUNCTIONS):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _READ_ONLY_PRAGMAS:
            return sqlite3.SQLITE_OK
        if not self.refused:
            if is_function:
                self.refused = f"function {arg2}()"
            elif action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master" and self._in_select:
                # A SELECT registering a pragma's virtual table: one not among the read-only ones made at start.
                self.refused = f"table-valued pragma (only {', '.join(_READ_ONLY_PRAGMAS)} are read)"
            else:
                self.refused = f"{_ACTION_NAMES.get(action, f'action {action}')} {arg1 or ''}".strip()
        return sqlite3.SQLITE_DENY


class SqliteDatabase:
    """One read-only connection, reused from query to query.

    Reuse is safe because no query can change the connection: the authorizer refuses PRAGMA (but the
    read-only ones), ATTACH, temporary tables and every other change of state, and each query gets its
    own authorizer and deadline.
    """

    def __init__(self, db_path: str) -> None:
        uri = Path(db_path).resolve().as_uri() + "?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        self._conn.text_factory = lambda data: data.decode("utf-8", errors="replace")  # Spider has some bad UTF-8
        self._conn.execute("PRAGMA query_only = ON")
        self._conn.execute("PRAGMA temp_store = MEMORY")  # big sorts stay under the memory limit, off the disk
        if hasattr(self._conn, "enable_load_extension"):  # absent when Python is built without extension loading
            self._conn.enable_load_extension(False)
        for pragma in _READ_ONLY_PRAGMAS:
            self._conn.execute(f"SELECT * FROM pragma_{pragma}('') LIMIT 0").fetchall()
        self._authorizer = _ReadOnlyAuthorizer()

    def fetch(self, sql: str, timeout_s: float) -> list[tuple]:
        """At most MAX_ROWS + 1 rows of the query's result; raises what the query raises."""
        deadline = time.monotonic() + timeout_s
        self._authorizer = _ReadOnlyAuthorizer()
        self._conn.set_authorizer(self._authorizer)
        self._conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
        with closing(self._conn.execute(sql)) as cursor:  # closed: no statement stays open between queries
            return cursor.fetchmany(MAX_ROWS + 1)

    def classify(self, error: Exception) -> tuple[str, str]:
        """(kind, detail) for a failed query."""
        message = one_line(str(error) or type(error).__name__)
        if self._authorizer.refused:
            return "forbidden", one_line(f"{FORBIDDEN}{self._authorizer.refused} (the sandbox only reads)")
        if _READ_ONLY_ERROR_MARK in message:
            return "forbidden", one_line(f"{FORBIDDEN}{message}")
        if any(mark in message for mark in _SYNTAX_ERROR_MARKS):
            return "syntax_error", message
        return "runtime_error", message

    def close(self) -> None:
        self._conn.close()
