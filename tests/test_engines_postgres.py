"""PostgreSQL tasks against a real throwaway server: verification, role checks, hostile candidates, schema, loading."""

from __future__ import annotations

import json
import os
import uuid
import warnings

import pytest

from codelutra.errors import UserError
from codelutra.execution.sql import SqlCheck, run_queries, verify_sql
from codelutra.models import load_tokenizer
from codelutra.tasks.prompts import render_schema, sql_messages
from codelutra.tasks.sql import load_sql_tasks
from codelutra.tasks.sql_grammar import schema_grammar
from tests.engine_fixtures import (
    CONCERTS,
    READER,
    WRITER,
    run_refinement_on,
    write_sqlite_concert,
)
from tests.test_constrain import accepts, rejected_golds

pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'codelutra[postgres]')")

PROBE = f"/tmp/codelutra-postgres-probe-{uuid.uuid4().hex[:8]}"
REFUSED = {"forbidden"}
# name: (candidate, the kinds it may get). {probe} is a file in /tmp that must never appear.
HOSTILE_POSTGRES = {
    "create_table": ("CREATE TABLE x (a int)", REFUSED),
    "create_temp_table": ("CREATE TEMP TABLE x AS SELECT 1", REFUSED),
    "select_into": ("SELECT * INTO stolen FROM singer", {"syntax_error"}),  # DECLARE takes no SELECT INTO
    "drop_table": ("DROP TABLE singer", REFUSED),
    "alter_table": ("ALTER TABLE concert ADD COLUMN z int", REFUSED),
    "insert": ("INSERT INTO singer VALUES (9, 'x', 'y', NULL, NULL)", REFUSED),
    "update": ("UPDATE singer SET name = 'x'", REFUSED),
    "delete": ("DELETE FROM singer", REFUSED),
    "truncate": ("TRUNCATE concert", REFUSED),
    "delete_in_with": ("WITH gone AS (DELETE FROM singer RETURNING *) SELECT name FROM gone", REFUSED),
    "select_for_update": ("SELECT name FROM singer FOR UPDATE", REFUSED),
    "two_statements": ("SELECT name FROM singer; DROP TABLE singer", {"syntax_error"}),
    "commit_then_drop": ("COMMIT; DROP TABLE singer", REFUSED),
    "copy_to_program": ("COPY singer TO PROGRAM 'touch {probe}'", REFUSED),
    "copy_to_file": ("COPY singer TO '{probe}'", REFUSED),
    "copy_in_select": ("SELECT name FROM singer UNION ALL SELECT 'x' FROM (COPY singer TO '{probe}') t", {"syntax_error"}),
    "pg_read_file": ("SELECT pg_read_file('/etc/passwd')", REFUSED),
    "pg_ls_dir": ("SELECT pg_ls_dir('/')", REFUSED),
    "lo_import": ("SELECT lo_import('/etc/passwd')", REFUSED),
    "lo_export": ("SELECT lo_export(lo_create(0), '{probe}')", REFUSED),
    "lo_create": ("SELECT lo_create(0)", {"wrong_result"}),  # runs, but the rollback takes the object away
    "dblink": ("SELECT * FROM dblink('dbname=postgres', 'DROP TABLE singer') AS t(a text)", {"runtime_error"}),
    "create_extension_dblink": ("CREATE EXTENSION dblink", REFUSED),
    "set_timeout_off": ("SET statement_timeout = 0", REFUSED),
    "set_role": ("SET ROLE postgres", REFUSED),
    "set_config_role": ("SELECT set_config('role', 'postgres', false)", REFUSED),
    "set_config_then_sleep": ("SELECT set_config('statement_timeout', '0', false), pg_sleep(30)", {"timeout"}),
    "pg_sleep": ("SELECT pg_sleep(30)", {"timeout"}),
    "recursive_cte": ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", {"timeout"}),
    "huge_result": ("SELECT g FROM generate_series(1, 1000000) g", {"runtime_error"}),
    "not_sql": ("PLEASE DROP TABLE singer", {"syntax_error"}),
    "end_own_session": ("SELECT pg_terminate_backend(pg_backend_pid())", {"runtime_error"}),
}
# Ends or cancels the sessions of the other workers (same role): their queries run again, verdicts intact
# (the export revokes both functions from PUBLIC: see test_export_...).
# {n} makes each query distinct, so that each one runs (identical ones would share one result).
SIBLING_KILLERS = [
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid() AND {n} = {n}",
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid() AND {n} = {n}",
]
SLOW_CORRECT = "SELECT name FROM singer, pg_sleep(0.05) WHERE {n} = {n} ORDER BY 1"  # long enough to be caught running



@pytest.fixture(scope="module")
def concert(postgres_server):
    name = postgres_server.create_concert_database("concert")
    return postgres_server.address(name, READER)


def test_correct_wrong_and_syntax_verdicts(concert):
    gold = "SELECT name FROM singer WHERE country = 'France' ORDER BY name"
    checks = [
        SqlCheck(concert, gold, "select NAME from singer where country = 'France' order by 1"),
        SqlCheck(concert, gold, "SELECT name FROM singer ORDER BY name"),
        SqlCheck(concert, gold, "SELECT name FROM singer WHERE"),
        SqlCheck(concert, gold, "TABLE singer"),
        SqlCheck(concert, gold, "  -- a comment first\n(SELECT name FROM singer WHERE country = 'France') ORDER BY name"),
    ]
    kinds = [v.kind for v in verify_sql(checks, timeout_s=5, workers=2)]
    assert kinds == ["correct", "wrong_result", "syntax_error", "wrong_result", "correct"]


def test_values_come_as_sqlite_gives_them(concert, tmp_path):
    """numeric -> float, timestamp and date -> ISO text, boolean -> 0/1: the same rows as SQLite's."""
    sqlite_path = write_sqlite_concert(tmp_path / "concert.sqlite")
    sql = "SELECT concert_id, fee, starts, born, active FROM concert JOIN singer USING (singer_id) ORDER BY concert_id"
    pg, lite = run_queries([(concert, sql), (sqlite_path, sql)], timeout_s=5, workers=1)
    assert pg.kind == lite.kind == "ok"
    assert pg.rows == [(10, 1500.5, "2024-06-01 20:00:00", "1980-05-01", 1), (11, 99.99, "2024-07-01 19:30:00", "1980-05-01", 1),
                       (12, 700.0, None, "1991-12-24", 0)]
    assert pg.rows == lite.rows


def test_hostile_candidates_are_refused_and_the_database_is_unchanged(postgres_server, concert):
    before = postgres_server.snapshot("concert")
    gold = "SELECT name FROM singer"
    candidates = [sql.format(probe=PROBE) for sql, _ in HOSTILE_POSTGRES.values()]
    verdicts = verify_sql([SqlCheck(concert, gold, c) for c in candidates], timeout_s=2, workers=2)
    for name, verdict in zip(HOSTILE_POSTGRES, verdicts):
        assert verdict.kind in HOSTILE_POSTGRES[name][1], (name, verdict)
    assert postgres_server.snapshot("concert") == before
    assert not os.path.exists(PROBE)
    with postgres_server.admin("concert") as db:  # no query of ours is left running or idle in a transaction
        states = db.execute("SELECT state FROM pg_stat_activity WHERE usename = %s", (READER,)).fetchall()
        assert ("active",) not in states and ("idle in transaction",) not in states


@pytest.mark.parametrize("killer", SIBLING_KILLERS, ids=["terminate", "cancel"])
def test_ending_the_other_workers_sessions_costs_them_nothing(concert, killer):
    candidates = [killer.format(n=0), *(SLOW_CORRECT.format(n=n) for n in range(1, 4))]
    verdicts = verify_sql([SqlCheck(concert, "SELECT name FROM singer ORDER BY name", c) for c in candidates], timeout_s=5, workers=3)
    assert [v.kind for v in verdicts] == ["wrong_result", "correct", "correct", "correct"], verdicts


def test_a_superuser_is_refused_before_any_query_runs(postgres_server, concert):
    superuser = postgres_server.address("concert")
    with pytest.raises(UserError, match="superuser"):
        verify_sql([SqlCheck(superuser, "SELECT 1", "SELECT 1")])
    with pytest.raises(UserError, match="superuser"):
        run_queries([(superuser, "SELECT 1")])


def test_a_role_that_can_write_gets_a_warning(postgres_server, concert):
    writer = postgres_server.address("concert", WRITER)
    with pytest.warns(UserWarning, match=f"role '{WRITER}' can write"):
        verdicts = verify_sql([SqlCheck(writer, "SELECT fee FROM concert", "DELETE FROM concert")])
    assert verdicts[0].kind == "forbidden"
    assert postgres_server.snapshot("concert")["counts"]["concert"] == len(CONCERTS)


def test_the_command_line_prints_the_writer_warning_as_one_line(postgres_server, concert, tmp_path, capsys):
    from codelutra.cli import main

    writer = postgres_server.address("concert", WRITER)
    line = {"id": 1, "task": "sql", "db": writer, "gold": "SELECT fee FROM concert", "candidate": "SELECT fee FROM concert"}
    (tmp_path / "candidates.jsonl").write_text(json.dumps(line) + "\n")
    assert main(["verify", str(tmp_path / "candidates.jsonl"), "--out", str(tmp_path / "verdicts.jsonl")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"codelutra: warning: {writer}: PostgreSQL role '{WRITER}' can write"), err


@pytest.mark.parametrize(
    "address",
    ["postgresql://reader:secret@/concert?host=/tmp", "postgresql://reader@/concert?password=secret", "host=/tmp password=secret"],
)
def test_a_password_in_an_address_is_refused(address, tmp_path):
    with pytest.raises(UserError, match="password"):
        verify_sql([SqlCheck(address, "SELECT 1", "SELECT 1")])
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text(json.dumps({"id": "a", "question": "Q", "gold_sql": "SELECT 1", "db_url": address}) + "\n")
    with pytest.raises(UserError, match=r"line 1: field 'db_url': .*password"):
        load_sql_tasks(tasks_file)


def test_schema_from_the_catalog_in_both_styles(concert):
    assert render_schema(concert, "compact") == (
        "singer(singer_id PK, name, country, born, active)\n"
        "concert(concert_id PK, singer_id, fee, starts)\n"
        "Foreign keys: concert.singer_id = singer.singer_id"
    )
    assert render_schema(concert, "create").splitlines() == [
        "CREATE TABLE singer (singer_id integer, name text, country text, born date, active boolean, PRIMARY KEY (singer_id))",
        "CREATE TABLE concert (concert_id integer, singer_id integer, fee numeric(8,2), starts timestamp without time zone, "
        "PRIMARY KEY (concert_id), FOREIGN KEY (singer_id) REFERENCES singer (singer_id))",
    ]


def test_jsonl_db_url_and_the_prompt_names_postgresql(concert, tmp_path):
    tasks_file = tmp_path / "tasks.jsonl"
    records = [
        {"id": "a", "question": "Names?", "gold_sql": "SELECT name FROM singer", "db_url": concert, "db_id": "concert"},
        {"id": "b", "question": "SQLite only", "gold_sql": "SELECT name FROM singer WHERE name GLOB 'J*'", "db_url": concert},
    ]
    tasks_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    tasks, skipped = load_sql_tasks(tasks_file)
    assert [t.id for t in tasks] == ["a"] and tasks[0].db_path == concert
    assert [s.id for s in skipped] == ["b"] and "gold query failed" in skipped[0].reason
    assert sql_messages(tasks[0])[0]["content"].endswith("Answer with one PostgreSQL query in a ```sql code block and nothing else.")


@pytest.fixture(scope="module")
def exported(postgres_server, tmp_path_factory):
    """The built-in task set written into the server, a database per db_id: its folder of task files."""
    from codelutra.tasks.builtin.export import export_builtin

    folder = tmp_path_factory.mktemp("builtin-postgres")
    export_builtin("postgres", folder, admin=postgres_server.address("postgres"), reader="exported_reader")
    return folder


def test_export_writes_a_database_per_db_id_read_by_a_select_only_role(postgres_server, exported):
    heldout = [json.loads(line) for line in (exported / "heldout.jsonl").read_text().splitlines()]
    assert {r["db_url"] for r in heldout} == {
        f"user=exported_reader dbname=codelutra_{r['db_id']} host={postgres_server.socket_dir}" for r in heldout
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the exported role is SELECT-only: no warning
        tasks, failed = load_sql_tasks(exported / "heldout.jsonl", limit=20)
    assert len(tasks) == 20 and not failed
    killer = SIBLING_KILLERS[0].format(n=0)
    [verdict] = verify_sql([SqlCheck(tasks[0].db_path, tasks[0].gold, killer)])
    assert verdict.kind == "forbidden" and "permission denied for function pg_terminate_backend" in verdict.detail


@pytest.mark.slow  # a whole refinement loop on the tiny model
def test_refinement_loop_on_postgres(exported, tmp_path, tiny_model_dir):
    run_refinement_on(exported, tmp_path, tiny_model_dir, dialect="PostgreSQL")


# A mixed-case name must be quoted in its exact case in PostgreSQL: unquoted, it folds to lower case.
POSTGRES_DIALECT = [
    ("SELECT name FROM singer WHERE country ILIKE 'fr%' ORDER BY born NULLS LAST", True),
    ("SELECT fee::integer, CAST(fee AS REAL) FROM concert", True),
    ('SELECT NAME, "Stage Name", "BirthYear" FROM Singer', True),
    ('SELECT "name" FROM singer WHERE country = "France"', False),  # a double-quoted text is a name
    ("SELECT BirthYear FROM singer", False),  # folds to birthyear: no such column
    ('SELECT "birthyear" FROM singer', False),
    ("SELECT name FROM singer WHERE name GLOB 'J*'", False),  # SQLite's and DuckDB's, not PostgreSQL's
    ("SELECT name FROM singer WHERE singer_id == 1", False),
    ("SELECT [name] FROM singer", False),
]


@pytest.mark.parametrize(("sql", "accepted"), POSTGRES_DIALECT)
def test_the_grammar_speaks_postgresqls_dialect(postgres_server, tiny_model_dir, sql, accepted):
    name = "grammar_case"
    if not _database_exists(postgres_server, name):
        postgres_server.create_concert_database(name)
        with postgres_server.admin(name) as db:
            db.execute('ALTER TABLE singer ADD COLUMN "BirthYear" integer, ADD COLUMN "Stage Name" text')
    address = postgres_server.address(name, READER)
    assert accepts(load_tokenizer(tiny_model_dir), schema_grammar(address), sql) == accepted


def _database_exists(server, name: str) -> bool:
    with server.admin() as db:
        return db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_the_grammar_takes_the_golds_exported_to_postgres(exported, tiny_model_dir):
    """Every gold query the export kept (it ran on PostgreSQL), against its database's PostgreSQL grammar."""
    rows = [json.loads(line) for split in ("train", "heldout") for line in (exported / f"{split}.jsonl").read_text().splitlines()]
    golds = [(r["db_url"], r["gold_sql"]) for r in rows]
    rejected = rejected_golds(load_tokenizer(tiny_model_dir), golds)
    assert len(golds) > 400
    assert not rejected, rejected[:10]
