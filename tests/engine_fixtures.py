"""A throwaway PostgreSQL server and small DuckDB / PostgreSQL databases for the engine tests.

The server is a cluster made by `initdb` in a temporary folder and started with `pg_ctl`: Unix socket
only (no TCP), trust authentication, fsync off, stopped and removed at the end of the session.
`initdb` refuses to run as root, so as root the cluster runs as the unprivileged `postgres` user (or
`nobody`) through `runuser`. Where the binaries are missing, the tests that need it skip saying so.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_BIN = Path(os.environ.get("CODELUTRA_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
READER = "reader"  # the SELECT-only role the sandbox connects as
WRITER = "writer"  # a role that owns tables: the sandbox warns about it

# The concert database every engine test uses: keys, a foreign key, and the types whose values the
# drivers give differently (numeric, date, timestamp, boolean).
SCHEMA = [
    "CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, born DATE, active BOOLEAN)",
    "CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer (singer_id), "
    "fee DECIMAL(8, 2), starts TIMESTAMP)",
]
SINGERS = [(1, "Joe", "France", "1980-05-01", True), (2, "Ann", "Spain", "1991-12-24", False), (3, "Li", "France", None, True)]
CONCERTS = [(10, 1, "1500.50", "2024-06-01 20:00:00"), (11, 1, "99.99", "2024-07-01 19:30:00"), (12, 2, "700.00", None)]


def _cluster_user() -> str | None:
    """The OS user to run the cluster as: None for ourselves, else an unprivileged one (we are root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("running as root and there is no unprivileged user (postgres, nobody) to run initdb as")


@dataclass
class PostgresServer:
    socket_dir: str
    superuser: str

    def address(self, database: str, user: str | None = None) -> str:
        return f"postgresql://{user or self.superuser}@/{database}?host={self.socket_dir}"

    def admin(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(self.address(database), autocommit=True)

    def create_concert_database(self, name: str) -> str:
        """A database with the concert tables, readable by READER, owned (so writable) by WRITER."""
        with self.admin() as server:
            server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            server.execute(f"CREATE DATABASE {name}")
            for role in (READER, WRITER):
                if not server.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    server.execute(f"CREATE ROLE {role} LOGIN")
        with self.admin(name) as db:
            for statement in SCHEMA:
                db.execute(statement)
            db.cursor().executemany("INSERT INTO singer VALUES (%s, %s, %s, %s, %s)", SINGERS)
            db.cursor().executemany("INSERT INTO concert VALUES (%s, %s, %s, %s)", CONCERTS)
            db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}")
            db.execute(f"ALTER TABLE concert OWNER TO {WRITER}")
        return name

    def snapshot(self, database: str) -> dict:
        """What a hostile query must not change: the catalog (every relation, role, database and large
        object) and the row count of each table."""
        with self.admin(database) as db:
            relations = db.execute(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "ORDER BY 1, 2"
            ).fetchall()
            tables = [name for schema, name, kind in relations if schema == "public" and kind == "r"]
            counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}
            return {
                "relations": relations,
                "counts": counts,
                "rows": {table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in tables},
                "roles": db.execute("SELECT rolname, rolsuper FROM pg_roles ORDER BY 1").fetchall(),
                "databases": db.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall(),
                "large_objects": db.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0],
                "extensions": db.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall(),
            }


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the session, on a Unix socket in a temporary folder."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'codelutra[postgres]')")
    initdb, pg_ctl = POSTGRES_BIN / "initdb", POSTGRES_BIN / "pg_ctl"
    if not (initdb.is_file() and pg_ctl.is_file()):
        pytest.skip(f"PostgreSQL binaries not found in {POSTGRES_BIN} (set CODELUTRA_POSTGRES_BIN)")
    user = _cluster_user()
    as_user = ["runuser", "-u", user, "--"] if user else []
    folder = Path(tempfile.mkdtemp(prefix="codelutra-pg-"))
    if user:
        shutil.chown(folder, user)
    data, log = folder / "data", folder / "server.log"
    superuser = "postgres"
    subprocess.run(
        [*as_user, str(initdb), "-D", str(data), "-U", superuser, "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses='' -c unix_socket_directories={folder} -c fsync=off -c max_connections=60"
    subprocess.run([*as_user, str(pg_ctl), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"], check=True, capture_output=True)
    try:
        yield PostgresServer(str(folder), superuser)
    finally:
        subprocess.run([*as_user, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def write_sqlite_concert(path: Path) -> str:
    """The concert database as a SQLite file: what the other engines' values must read like."""
    import sqlite3

    with sqlite3.connect(path) as db:
        for statement in SCHEMA:
            db.execute(statement)
        db.executemany("INSERT INTO singer VALUES (?, ?, ?, ?, ?)", SINGERS)
        db.executemany("INSERT INTO concert VALUES (?, ?, ?, ?)", [(c, s, float(f), t) for c, s, f, t in CONCERTS])
    return str(path)


def write_duckdb_concert(path: Path) -> str:
    """The concert database as a DuckDB file; returns its address."""
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install 'codelutra[duckdb]')")
    conn = duckdb.connect(str(path))
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany("INSERT INTO singer VALUES (?, ?, ?, ?, ?)", SINGERS)
        conn.executemany("INSERT INTO concert VALUES (?, ?, ?, ?)", CONCERTS)
    finally:
        conn.close()
    return f"duckdb://{path}"


def run_refinement_on(task_folder: Path, out_dir: Path, model_dir: str, *, dialect: str) -> None:
    """One refinement iteration of a tiny random model on an exported built-in set, checked end to end."""
    import json

    from codelutra.config import load_config
    from codelutra.execution.verdict import VERDICT_KINDS
    from codelutra.loop.refine import Refiner
    from codelutra.tasks.prompts import sql_messages

    cfg = load_config(None, [
        f"model.name={model_dir}", f"output_dir={out_dir}", "name=tiny",
        f"train_tasks.path={task_folder / 'train.jsonl'}", "train_tasks.limit=6",
        f"eval_tasks.path={task_folder / 'heldout.jsonl'}", "eval_tasks.limit=4",
        "sampling.n=2", "sampling.max_new_tokens=12", "eval.max_new_tokens=12",
        "train.batch_size=2", "max_iterations=1",
    ])
    refiner = Refiner(cfg)
    history = refiner.run()
    run_dir = out_dir / "runs" / "tiny"
    assert [h["iteration"] for h in history] == [0, 1]
    for k in (0, 1):
        result = json.loads((run_dir / f"iter_{k}" / "eval.json").read_text())
        assert result["n"] == 4 and sum(result["counts"].values()) == 4
    verdicts = [json.loads(line) for line in (run_dir / "iter_1" / "verdicts.jsonl").read_text().splitlines()]
    assert len(verdicts) == 6 and all(v in VERDICT_KINDS for row in verdicts for v in row["verdicts"])
    assert (run_dir / "iter_1" / "pairs.jsonl").read_text().strip(), "a random model yields gold-vs-sample pairs"
    assert all(f"Answer with one {dialect} query" in sql_messages(t)[0]["content"] for t in refiner.train_tasks)
