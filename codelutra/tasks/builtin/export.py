"""Write the built-in task set into DuckDB files or a PostgreSQL server, for runs on those engines.

    python -m codelutra.tasks.builtin.export duckdb OUT_DIR
    python -m codelutra.tasks.builtin.export postgres OUT_DIR --admin URL [--reader ROLE]

Each built-in database is copied table by table (same schema, keys and rows) into
`OUT_DIR/databases/<db_id>.duckdb`, or into a PostgreSQL database `codelutra_<db_id>` (made anew;
`--admin` names a role that may create databases (a superuser: the export also revokes
pg_terminate_backend and pg_cancel_backend from PUBLIC there), and `--reader`, default
`codelutra_reader`, is the SELECT-only role the tasks connect as: created when missing, granted
CONNECT and SELECT only).
`OUT_DIR/train.jsonl` and `heldout.jsonl` then name those databases by `db_url`.

Every gold query is run on the new engine and its result compared with SQLite's (the verifier's
own rule): a gold that fails there or answers differently (SQLite's integer division, its
case-insensitive LIKE...) is reported and left out, and listed in `OUT_DIR/skipped.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from codelutra.artifacts import write_jsonl
from codelutra.errors import UserError
from codelutra.execution.engines import check_address, missing_driver, plain_rows
from codelutra.execution.sql_match import gold_is_ordered, results_match
from codelutra.tasks.builtin import BUILTIN_VERSION, SPLITS, build_builtin_tasks
from codelutra.tasks.builtin.domains import create_statement

ENGINES = ("duckdb", "postgres")
DEFAULT_READER = "codelutra_reader"
_DUCKDB_ROWS_PER_INSERT = 500
# SQLite's REAL is a double; DuckDB's and PostgreSQL's REAL is single precision.
_TYPES = {"REAL": "DOUBLE PRECISION"}


def export_builtin(engine: str, out_dir: str | Path, *, admin: str = "", reader: str = DEFAULT_READER) -> list[dict]:
    """Write the built-in set to `engine` and its task files to `out_dir`; return the golds left out."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if missing := missing_driver(engine):
        raise UserError(missing)
    from codelutra.models import cache_dir

    source = build_builtin_tasks(cache_dir() / f"builtin-v{BUILTIN_VERSION}")
    out_dir = Path(out_dir)
    (out_dir / "databases").mkdir(parents=True, exist_ok=True)
    if engine == "postgres":
        if not admin:
            raise UserError("postgres: --admin URL is required (a role that may create databases)")
        check_address(admin)
    skipped = []
    for split, _, _ in SPLITS:
        records = [json.loads(line) for line in (source / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        kept = []
        for db_id in dict.fromkeys(record["db_id"] for record in records):
            sqlite_path = source / "databases" / f"{db_id}.sqlite"
            if engine == "duckdb":
                target = _DuckdbTarget(out_dir / "databases" / f"{db_id}.duckdb", f"duckdb://databases/{db_id}.duckdb")
            else:
                target = _PostgresTarget(admin, f"codelutra_{db_id}", reader)
            try:
                _copy_database(sqlite_path, target)
                for record in (r for r in records if r["db_id"] == db_id):
                    reason = _gold_differs(sqlite_path, target, record["gold_sql"])
                    if reason:
                        skipped.append({"split": split, "id": record["id"], "gold_sql": record["gold_sql"], "reason": reason})
                        continue
                    kept.append({key: value for key, value in record.items() if key != "db_path"} | {"db_url": target.url})
            finally:
                target.close()
        write_jsonl(out_dir / f"{split}.jsonl", kept)
    write_jsonl(out_dir / "skipped.jsonl", skipped)
    return skipped


def _copy_database(sqlite_path: Path, target) -> None:
    """The SQLite database's tables (keys and rows) written into `target`, parents before children."""
    from codelutra.tasks.builtin.domains import HELDOUT_DOMAINS, TRAIN_DOMAINS

    domain = next(d for d in (*TRAIN_DOMAINS, *HELDOUT_DOMAINS) if d.db_id == sqlite_path.stem)
    source = sqlite3.connect(sqlite_path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        for table in domain.tables:
            statement = create_statement(table, domain.links)
            for sqlite_type, engine_type in _TYPES.items():
                statement = statement.replace(f" {sqlite_type}", f" {engine_type}")
            rows = source.execute(f"SELECT * FROM {table.name}").fetchall()
            target.create(statement, table.name, len(table.columns), rows)
        target.finish()
    finally:
        source.close()


def _gold_differs(sqlite_path: Path, target, sql: str) -> str:
    """'' when the gold gives the same result on `target` as on SQLite, else why not."""
    source = sqlite3.connect(sqlite_path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        expected = source.execute(sql).fetchall()
    finally:
        source.close()
    try:
        got = plain_rows(target.query(sql))
    except Exception as error:  # the driver's error: the gold is not valid in this dialect
        return "fails here: " + " ".join(str(error).split())[:200]
    same = results_match(expected, got, ordered=gold_is_ordered(sql)) if expected and got else expected == got
    if not same:
        return f"answers differently here ({len(got)} rows, SQLite {len(expected)})"
    return ""


class _DuckdbTarget:
    def __init__(self, path: Path, url: str) -> None:
        import duckdb

        path.unlink(missing_ok=True)
        self.url = url
        self._conn = duckdb.connect(str(path))

    def create(self, statement: str, table: str, width: int, rows: list[tuple]) -> None:
        self._conn.execute(statement)
        row_marks = f"({', '.join('?' * width)})"
        for start in range(0, len(rows), _DUCKDB_ROWS_PER_INSERT):  # executemany inserts row by row: slow
            chunk = rows[start : start + _DUCKDB_ROWS_PER_INSERT]
            values = [value for row in chunk for value in row]
            self._conn.execute(f"INSERT INTO {table} VALUES {', '.join([row_marks] * len(chunk))}", values)

    def finish(self) -> None:
        self._conn.execute("CHECKPOINT")

    def query(self, sql: str) -> list[tuple]:
        return self._conn.execute(sql).fetchall()

    def close(self) -> None:
        self._conn.close()


class _PostgresTarget:
    """A database made anew on the server, written as the admin role, read by the reader role."""

    def __init__(self, admin: str, database: str, reader: str) -> None:
        import psycopg
        from psycopg import sql as pg_sql
        from psycopg.conninfo import make_conninfo

        self._sql = pg_sql
        with psycopg.connect(admin, autocommit=True) as server:
            server.execute(pg_sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pg_sql.Identifier(database)))
            server.execute(pg_sql.SQL("CREATE DATABASE {}").format(pg_sql.Identifier(database)))
            exists = server.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (reader,)).fetchone()
            if not exists:
                server.execute(pg_sql.SQL("CREATE ROLE {} LOGIN").format(pg_sql.Identifier(reader)))
        self._reader = reader
        self._database = database
        self._conn = psycopg.connect(make_conninfo(admin, dbname=database))
        self.url = make_conninfo(admin, dbname=database, user=reader)

    def create(self, statement: str, table: str, width: int, rows: list[tuple]) -> None:
        self._conn.execute(statement)
        with self._conn.cursor().copy(self._sql.SQL("COPY {} FROM STDIN").format(self._sql.Identifier(table))) as copy:
            for row in rows:
                copy.write_row(row)

    def finish(self) -> None:
        ident = self._sql.Identifier
        self._conn.execute(self._sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(self._database)))
        self._conn.execute(self._sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(self._database), ident(self._reader)))
        self._conn.execute(self._sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident(self._reader)))
        self._conn.execute(self._sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(ident(self._reader)))
        # Any role may end or cancel its own other sessions: one candidate could disturb the other workers.
        self._conn.execute("REVOKE EXECUTE ON FUNCTION pg_terminate_backend, pg_cancel_backend FROM PUBLIC")
        self._conn.commit()

    def query(self, sql: str) -> list[tuple]:
        try:
            return self._conn.execute(sql).fetchall()
        finally:
            self._conn.rollback()

    def close(self) -> None:
        self._conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codelutra.tasks.builtin.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("out_dir")
    parser.add_argument("--admin", default="", help="postgres: an address of a role that may create databases")
    parser.add_argument("--reader", default=DEFAULT_READER, help="postgres: the SELECT-only role the tasks connect as")
    args = parser.parse_args(argv)
    try:
        skipped = export_builtin(args.engine, args.out_dir, admin=args.admin, reader=args.reader)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for item in skipped:
        print(f"skipped {item['split']}/{item['id']}: {item['reason']}", file=sys.stderr)
    kept = {split: sum(1 for _ in open(Path(args.out_dir) / f"{split}.jsonl")) for split, _, _ in SPLITS}
    print(f"wrote {args.out_dir}: " + ", ".join(f"{split} {n} tasks" for split, n in kept.items()) + f"; {len(skipped)} golds left out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
