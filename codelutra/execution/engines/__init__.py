"""Which database engine a SQL task's database address names, and what every engine's sandbox shares.

A database address is one of:

* a SQLite file path (or `sqlite:///path`), as SQL tasks have always had;
* `duckdb:///path/to/file.duckdb` (`duckdb://relative/file.duckdb` is relative to where it is read);
* `postgresql://user@host:port/db` (or `postgres://`), or a libpq keyword string such as
  `service=analytics` or `host=/run/postgresql dbname=shop`.

A password never travels in an address written in a task file or a config: PostgreSQL takes it from
the environment (PGPASSWORD, PGSERVICEFILE) or libpq's own files (~/.pgpass, ~/.pg_service.conf).

This module is imported by the sandbox workers, which start without site-packages: standard library only.
"""

from __future__ import annotations

import datetime
import decimal
import importlib.util
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ENGINES = ("sqlite", "duckdb", "postgres")
DIALECTS = {"sqlite": "SQLite", "duckdb": "DuckDB", "postgres": "PostgreSQL"}  # as the prompt names them
# The driver each engine needs beyond the standard library, and the extra that installs it.
DRIVERS = {"duckdb": ("duckdb", "codelutra[duckdb]"), "postgres": ("psycopg", "codelutra[postgres]")}

MAX_ROWS = 100_000  # more rows than this is an error, not a result

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_DUCKDB_SCHEME = "duckdb://"
_SQLITE_SCHEME = "sqlite://"
_LIBPQ_KEYWORDS = re.compile(r"^\s*[a-z_]+\s*=")  # `service=...`, `host=... dbname=...`
_LIBPQ_PASSWORD = re.compile(r"(^|\s)password\s*=")
_SQLITE_HEADER = b"SQLite format 3\x00"  # a SQLite file's first bytes (an empty file is an empty database too)
_DUCKDB_MAGIC = b"DUCK"  # a DuckDB file's bytes 8-11


class BadAddress(ValueError):
    """A database address that must not be used; the message says why."""


class Refused(Exception):
    """A connection the sandbox will not run queries on (a PostgreSQL superuser); verdict `forbidden`."""


@dataclass(frozen=True)
class QueryResult:
    kind: str  # "ok" | "runtime_error" | "syntax_error" | "timeout" | "forbidden"
    rows: list[tuple] | None  # None unless kind == "ok"
    error: str  # "" when ok
    seconds: float


def engine_of(address: str) -> str:
    """The engine ("sqlite", "duckdb" or "postgres") that a database address names."""
    if address.startswith(_POSTGRES_SCHEMES) or _LIBPQ_KEYWORDS.match(address):
        return "postgres"
    if address.startswith(_DUCKDB_SCHEME):
        return "duckdb"
    return "sqlite"


def local_file(address: str) -> str:
    """The file of a SQLite or DuckDB address, as written (maybe relative)."""
    for scheme in (_DUCKDB_SCHEME, _SQLITE_SCHEME):
        if address.startswith(scheme):
            return address[len(scheme):]
    return address


def with_file(address: str, path: str | Path) -> str:
    """The same kind of address with its file replaced by `path` (e.g. made absolute)."""
    return f"{_DUCKDB_SCHEME}{path}" if engine_of(address) == "duckdb" else str(path)


def usable_address(address: str) -> str:
    """`address` as the sandbox and the schema reader take it (a SQLite one as its bare path), once checked.

    Raises BadAddress for a password in it (`check_address`), or for a SQLite or DuckDB file that is
    missing, a folder, or another engine's database: said here, where the engine would say "unable to
    open database file", "disk I/O error" or "Loading external extensions is disabled".
    """
    check_address(address)
    engine = engine_of(address)
    if engine == "postgres":
        return address
    path = Path(local_file(address))
    if path.is_dir():
        raise BadAddress(f"{path} is a folder, not a database file")
    if not path.is_file():
        raise BadAddress(f"database not found: {path}")
    try:
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as error:
        raise BadAddress(f"cannot read {path} ({error.strerror or error})") from None
    found = "sqlite" if header.startswith(_SQLITE_HEADER) else "duckdb" if header[8:12] == _DUCKDB_MAGIC else None
    if found is not None and found != engine:
        written = f"{_DUCKDB_SCHEME}{path}" if found == "duckdb" else f"its path or {_SQLITE_SCHEME}{path}"
        raise BadAddress(f"{path} is a {DIALECTS[found]} database, not a {DIALECTS[engine]} one: name it as {written}")
    return with_file(address, path)


def check_address(address: str) -> None:
    """Raise BadAddress for an address that holds a password (it would end up in artifacts and logs)."""
    if engine_of(address) != "postgres":
        return
    if address.startswith(_POSTGRES_SCHEMES):
        parts = urlsplit(address)
        if parts.password is not None or "password" in parse_qs(parts.query):
            raise BadAddress(
                "a PostgreSQL URL may not hold a password; set PGPASSWORD or use ~/.pgpass or a service file"
            )
    elif _LIBPQ_PASSWORD.search(address):
        raise BadAddress("a PostgreSQL address may not hold a password; set PGPASSWORD or use ~/.pgpass or a service file")


def missing_driver(engine: str) -> str:
    """'' when the engine's driver is importable, else a line saying what to install."""
    if engine not in DRIVERS:
        return ""
    module, extra = DRIVERS[engine]
    if importlib.util.find_spec(module) is not None:
        return ""
    return f"{DIALECTS[engine]} databases need the {module} package: pip install '{extra}'"


def driver_paths(engines: set[str]) -> list[str]:
    """The folders holding the drivers of `engines`, for the worker's PYTHONPATH (it starts without site-packages)."""
    paths = []
    for engine in sorted(engines & set(DRIVERS)):
        spec = importlib.util.find_spec(DRIVERS[engine][0])
        if spec is not None and spec.origin:
            folder = str(Path(spec.origin).resolve().parents[1])
            if folder not in paths:
                paths.append(folder)
    return paths



def plain_value(value: object) -> object:
    """A value as SQLite's driver would give it, so that results compare the same across engines.

    Decimal -> float (the comparison treats floats to 6 significant digits anyway); booleans -> 0/1;
    dates, times and timestamps -> ISO text with a space between date and time (SQLite's own
    `datetime()` form); intervals, UUIDs, lists, structs and JSON -> their text; bytes stay bytes.
    """
    if isinstance(value, bool):  # before int: a bool is an int
        return int(value)
    if value is None or isinstance(value, (int, float, str, bytes)):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (datetime.timedelta, uuid.UUID)):
        return str(value)
    return repr(value)  # lists, dicts (structs, JSON), ranges...: hashable and comparable as text


def plain_rows(rows: list[tuple]) -> list[tuple]:
    return [tuple(plain_value(value) for value in row) for row in rows]


READING_KEYWORDS = frozenset({"select", "with", "values", "table"})
_LEADING_WORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*([A-Za-z_]\w*)?", re.DOTALL)


def leading_keyword(sql: str) -> str:
    """The query's first word, lowercased, past comments and opening parentheses ('' if none)."""
    return (_LEADING_WORD.match(sql).group(1) or "").lower()
