"""Read a DuckDB or PostgreSQL database's tables, columns and keys from the engine's own catalog, for the prompt.

This is trusted code reading a user's database, not a candidate's query: it runs in the caller's
process, on a connection that cannot write (DuckDB opened read-only; PostgreSQL in a READ ONLY
transaction that is rolled back).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from codelutra.errors import UserError
from codelutra.execution.engines import engine_of, local_file, missing_driver


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, type as the engine writes it)
    primary_key: list[str] = field(default_factory=list)
    foreign_keys: list[tuple[list[str], str, list[str]]] = field(default_factory=list)  # (columns, parent, parent columns)


# The user's tables of a SQLite database (name, CREATE statement), in creation order.
SQLITE_TABLES = "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"


@contextmanager
def read_only_sqlite(address: str) -> Iterator[sqlite3.Connection]:
    """A SQLite database opened so that reading it can never change it; a missing file is the user's error."""
    path = local_file(address)
    if not Path(path).is_file():
        raise UserError(f"{path}: database not found")
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def sqlite_tables(address: str) -> list[Table]:
    """A SQLite database's tables, columns and primary keys: the names `render_schema` shows."""
    with read_only_sqlite(address) as db:
        tables = []
        for name, _ in db.execute(SQLITE_TABLES).fetchall():
            info = db.execute("SELECT name, type, pk FROM pragma_table_info(?)", (name,)).fetchall()
            tables.append(Table(name, [(c, t) for c, t, _ in info], [c for c, _, pk in sorted(info, key=lambda r: r[2]) if pk]))
        return tables


def read_tables(address: str) -> list[Table]:
    """The tables of a DuckDB or PostgreSQL database, in creation order."""
    engine = engine_of(address)
    if missing := missing_driver(engine):
        raise UserError(f"{address}: {missing}")
    return _duckdb_tables(address) if engine == "duckdb" else _postgres_tables(address)


def _duckdb_tables(address: str) -> list[Table]:
    import duckdb

    try:
        conn = duckdb.connect(local_file(address), read_only=True, config={"enable_external_access": False})
    except duckdb.Error as error:
        raise UserError(f"{address}: cannot open the DuckDB database ({error})") from None
    try:
        tables = {
            name: Table(name)
            for (name,) in conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT internal AND NOT temporary ORDER BY table_oid"
            ).fetchall()
        }
        for table, column, data_type in conn.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE NOT internal ORDER BY table_oid, column_index"
        ).fetchall():
            if table in tables:
                tables[table].columns.append((column, data_type))
        for table, kind, columns, parent, parent_columns in conn.execute(
            "SELECT table_name, constraint_type, constraint_column_names, referenced_table, referenced_column_names "
            "FROM duckdb_constraints() WHERE constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY') "
            "ORDER BY table_oid, constraint_index"
        ).fetchall():
            if table not in tables:
                continue
            if kind == "PRIMARY KEY":
                tables[table].primary_key = list(columns)
            else:
                tables[table].foreign_keys.append((list(columns), parent, list(parent_columns)))
        return list(tables.values())
    finally:
        conn.close()


# The tables of the schemas on the search path (a schema per database, or public), oldest first.
_PG_TABLES = """
SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false)) AND NOT c.relispartition
ORDER BY c.oid
"""
_PG_COLUMNS = """
SELECT attrelid, attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = ANY (%s::oid[]) AND attnum > 0 AND NOT attisdropped ORDER BY attrelid, attnum
"""
_PG_KEYS = """
SELECT con.conrelid, con.contype, parent.relname,
       ARRAY(SELECT attname FROM unnest(con.conkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.pos),
       ARRAY(SELECT attname FROM unnest(con.confkey) WITH ORDINALITY k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.pos)
FROM pg_constraint con LEFT JOIN pg_class parent ON parent.oid = con.confrelid
WHERE con.conrelid = ANY (%s::oid[]) AND con.contype IN ('p', 'f') ORDER BY con.conrelid, con.oid
"""


def _postgres_tables(address: str) -> list[Table]:
    import psycopg

    try:
        conn = psycopg.connect(address, connect_timeout=10)
    except psycopg.Error as error:
        raise UserError(f"{address}: cannot connect to PostgreSQL ({' '.join(str(error).split())})") from None
    try:
        conn.read_only = True
        tables = {oid: Table(name) for oid, name in conn.execute(_PG_TABLES).fetchall()}
        oids = list(tables)
        for oid, column, data_type in conn.execute(_PG_COLUMNS, (oids,)).fetchall():
            tables[oid].columns.append((column, data_type))
        for oid, kind, parent, columns, parent_columns in conn.execute(_PG_KEYS, (oids,)).fetchall():
            if kind == "p":
                tables[oid].primary_key = list(columns)
            else:
                tables[oid].foreign_keys.append((list(columns), parent, list(parent_columns)))
        conn.rollback()
        return list(tables.values())
    finally:
        conn.close()
