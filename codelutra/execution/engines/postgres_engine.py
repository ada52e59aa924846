"""PostgreSQL in a sandbox worker (psycopg 3), and the start-up check of the role it connects as.

Each query runs in a READ ONLY transaction that is always rolled back, through a server-side cursor
(`DECLARE ... CURSOR FOR`: the server takes exactly one SELECT-like statement there and refuses
data-modifying WITH parts), with `statement_timeout` set for that transaction and rows fetched only up
to the cap. Only statements that read (SELECT, WITH, VALUES, TABLE) are sent at all. The role matters
as much as the transaction: a read-only transaction does not stop a superuser's `COPY ... TO PROGRAM`,
`pg_read_file` or `lo_export`, nor `dblink` to a writable connection, so a superuser connection is
refused outright and a role that can write anything draws a warning (the README shows how to make a
SELECT-only role).
"""

from __future__ import annotations

import functools
import math

import psycopg
from psycopg import errors as pg_errors

from codelutra.execution.engines import (
    MAX_ROWS,
    READING_KEYWORDS,
    Refused,
    leading_keyword,
    plain_rows,
)
from codelutra.execution.verdict import one_line

_CONNECT_TIMEOUT_S = 10
# Session settings: a transaction left open (a worker stuck between two queries) ends by itself, and
# (PostgreSQL 14 and later) a query whose worker was killed stops within a second instead of running on.
_SESSION_SETTINGS = {"idle_in_transaction_session_timeout": "10s"}
_SESSION_SETTINGS_14 = {"client_connection_check_interval": "1s"}
_FETCH_BATCH_ROWS = 10_000
_TRIES = 3  # runs of a query whose session another one ended or cancelled

_FORBIDDEN_STATES = (pg_errors.ReadOnlySqlTransaction, pg_errors.InsufficientPrivilege)
_NOT_READING = "forbidden: only SELECT, WITH, VALUES and TABLE statements run in the sandbox"
# The first words of PostgreSQL's other commands: a query starting with one is refused, not run; one
# starting with any other word is not SQL at all (a syntax error), and is not sent either.
_OTHER_COMMANDS = frozenset(
    "abort alter analyze begin call checkpoint close cluster comment commit copy create deallocate declare delete "
    "discard do drop end execute explain fetch grant import insert listen load lock merge move notify prepare "
    "reassign refresh reindex release reset revoke rollback savepoint security set show start truncate unlisten "
    "update vacuum".split()
)


class _NotSql(Exception):
    """A query that does not start with an SQL command word."""

# Anything the role may change: a table it may write, a schema or the database it may create in, or
# roles and databases it may create. Whether through its own grants, PUBLIC's or a role it belongs to.
_CAN_WRITE_SQL = """
SELECT
  EXISTS (
    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%'
      AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
  OR EXISTS (
    SELECT 1 FROM pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      AND has_schema_privilege(n.oid, 'CREATE'))
  OR has_database_privilege(current_database(), 'CREATE')
  OR (SELECT rolcreatedb OR rolcreaterole FROM pg_roles WHERE rolname = current_user)
"""


def connect(address: str) -> psycopg.Connection:
    """A connection for one worker; raises Refused for a superuser."""
    conn = psycopg.connect(address, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
    try:
        if conn.info.parameter_status("is_superuser") == "on":
            raise Refused(f"forbidden: connected as superuser {conn.info.user!r}; the sandbox needs a SELECT-only role")
        settings = _SESSION_SETTINGS | (_SESSION_SETTINGS_14 if conn.info.server_version >= 140000 else {})
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.autocommit = False
        conn.read_only = True  # every transaction psycopg opens is BEGIN READ ONLY
    except BaseException:
        conn.close()
        raise
    return conn


class PostgresDatabase:
    """One connection, reused from query to query: nothing a query does outlives its rolled-back transaction."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._conn = None  # connected by the first query: within its retries

    def fetch(self, sql: str, timeout_s: float) -> list[tuple]:
        word = leading_keyword(sql)
        if word in _OTHER_COMMANDS:
            raise Refused(_NOT_READING)
        if word not in READING_KEYWORDS:
            raise _NotSql(f'syntax error at or near "{word or sql[:20]}" (not an SQL query)')
        for _ in range(_TRIES - 1):
            try:
                return self._fetch(sql, timeout_s)
            except psycopg.Error as error:
                # Any role may end or cancel its own other sessions (pg_terminate_backend, pg_cancel_backend):
                # a candidate in another worker must not cost this query its verdict, so it runs again.
                cancelled_by_someone = isinstance(error, pg_errors.QueryCanceled) and "user request" in str(error)
                socket_failed = isinstance(error, psycopg.OperationalError) and error.sqlstate is None
                session_lost = (
                    self._conn is None or self._conn.closed or socket_failed or isinstance(error, pg_errors.AdminShutdown)
                )
                if not (session_lost or cancelled_by_someone):
                    raise
            if session_lost and self._conn is not None:
                self._conn.close()
                self._conn = None
        return self._fetch(sql, timeout_s)

    def _fetch(self, sql: str, timeout_s: float) -> list[tuple]:
        if self._conn is None:
            self._conn = connect(self._address)
        try:
            milliseconds = max(1, math.ceil(timeout_s * 1000))
            self._conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{milliseconds}ms",))
            with self._conn.cursor(name="candidate") as cursor:
                cursor.itersize = _FETCH_BATCH_ROWS
                cursor.execute(sql)
                rows = cursor.fetchmany(MAX_ROWS + 1)
        finally:
            if not self._conn.closed:
                self._conn.rollback()
        return plain_rows(rows)

    def classify(self, error: Exception) -> tuple[str, str]:
        message = one_line(str(error) or type(error).__name__)
        if isinstance(error, Refused):
            return "forbidden", message
        if isinstance(error, _NotSql):
            return "syntax_error", message
        if isinstance(error, pg_errors.QueryCanceled):
            return "timeout", message
        if isinstance(error, _FORBIDDEN_STATES) or "data-modifying" in message:
            return "forbidden", one_line(f"forbidden: {message}")
        if isinstance(error, pg_errors.SyntaxError):
            return "syntax_error", message
        return "runtime_error", message

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@functools.cache
def role_can_write(address: str) -> str:
    """Run once per address in the caller before any query: raise Refused for a superuser; return the role's
    name when it may write or create anything (worth a warning), else ''."""
    with connect(address) as conn:
        can_write = conn.execute(_CAN_WRITE_SQL).fetchone()[0]
        conn.rollback()
        return conn.info.user if can_write else ""
