"""DuckDB tasks: verification in the sandbox, values as SQLite gives them, hostile candidates, schema, loading."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest

from codelutra.execution.sql import SqlCheck, run_queries, verify_sql
from codelutra.models import load_tokenizer
from codelutra.tasks.prompts import render_schema, sql_messages
from codelutra.tasks.sql import load_sql_tasks
from codelutra.tasks.sql_grammar import schema_grammar
from tests.engine_fixtures import (
    run_refinement_on,
    write_duckdb_concert,
    write_sqlite_concert,
)
from tests.test_constrain import accepts, rejected_golds

pytest.importorskip("duckdb", reason="duckdb is not installed (pip install 'codelutra[duckdb]')")

PROBE = f"/tmp/codelutra-duckdb-probe-{uuid.uuid4().hex[:8]}"
REFUSED = {"forbidden"}
# name: (candidate, the kinds it may get). {folder} is the database's folder, {probe} a file in /tmp.
HOSTILE_DUCKDB = {
    "create_table": ("CREATE TABLE x (a INTEGER)", REFUSED),
    "create_temp_table": ("CREATE TEMP TABLE x AS SELECT 1", REFUSED),
    "drop_table": ("DROP TABLE singer", REFUSED),
    "alter_table": ("ALTER TABLE singer ADD COLUMN z INTEGER", REFUSED),
    "insert": ("INSERT INTO singer VALUES (9, 'x', 'y', NULL, NULL)", REFUSED),
    "update": ("UPDATE singer SET name = 'x'", REFUSED),
    "delete": ("DELETE FROM singer", REFUSED),
    "two_statements": ("SELECT name FROM singer; DROP TABLE singer", REFUSED),
    "copy_to_file": ("COPY singer TO '{folder}/out.csv'", REFUSED),
    "copy_query_to_tmp": ("COPY (SELECT * FROM singer) TO '{probe}'", REFUSED),
    "export_database": ("EXPORT DATABASE '{folder}/exported'", REFUSED),
    "read_csv_passwd": ("SELECT * FROM read_csv('/etc/passwd')", REFUSED),
    "read_text_passwd": ("SELECT content FROM read_text('/etc/passwd')", REFUSED),
    "file_as_table": ("SELECT * FROM '/etc/passwd'", {"runtime_error"}),  # replacement scans off: no such table
    "glob_files": ("SELECT * FROM glob('/etc/*')", REFUSED),
    "install": ("INSTALL httpfs", REFUSED),
    "force_install": ("FORCE INSTALL sqlite", REFUSED),
    "load": ("LOAD httpfs", REFUSED),
    "attach_file": ("ATTACH '{folder}/other.duckdb' AS other", REFUSED),
    "attach_memory": ("ATTACH ':memory:' AS scratch", REFUSED),
    "set_external_access": ("SET enable_external_access = true", REFUSED),
    "set_memory": ("SET memory_limit = '100GB'", REFUSED),
    "reset_threads": ("RESET threads", REFUSED),
    "pragma": ("PRAGMA enable_profiling", REFUSED),
    "checkpoint": ("CHECKPOINT", REFUSED),
    "vacuum": ("VACUUM", REFUSED),
    "call": ("CALL pragma_version()", REFUSED),
    "endless_range": ("SELECT count(*) FROM range(1000000000000)", {"timeout"}),
    "recursive_cte": ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", {"timeout"}),
    "huge_result": ("SELECT * FROM range(10000000)", {"runtime_error"}),
    "memory_bomb": ("SELECT max(length(s)) FROM (SELECT string_agg(repeat('x', 1000), '') AS s FROM range(10000000))", {"runtime_error", "timeout"}),
}


@pytest.fixture
def concert(tmp_path):
    return write_duckdb_concert(tmp_path / "concert.duckdb")


def test_correct_wrong_and_syntax_verdicts(concert):
    gold = "SELECT name FROM singer WHERE country = 'France' ORDER BY name"
    checks = [
        SqlCheck(concert, gold, "select NAME from singer where country = 'France' order by 1"),
        SqlCheck(concert, gold, "SELECT name FROM singer ORDER BY name"),
        SqlCheck(concert, gold, "SELEC name FROM singer"),
        SqlCheck(concert, gold, "FROM singer SELECT name WHERE country = 'France' ORDER BY name"),  # DuckDB's FROM-first
        SqlCheck(concert, gold, None),
    ]
    kinds = [v.kind for v in verify_sql(checks, timeout_s=5, workers=2)]
    assert kinds == ["correct", "wrong_result", "syntax_error", "correct", "no_code"]


def test_values_come_as_sqlite_gives_them(concert, tmp_path):
    """Decimal -> float, timestamps and dates -> ISO text, booleans -> 0/1: the same rows as SQLite's."""
    sqlite_path = write_sqlite_concert(tmp_path / "concert.sqlite")
    sql = "SELECT concert_id, fee, starts, born, active FROM concert JOIN singer USING (singer_id) ORDER BY concert_id"
    duck, lite = run_queries([(concert, sql), (sqlite_path, sql)], timeout_s=5, workers=1)
    assert duck.kind == lite.kind == "ok"
    assert duck.rows == [(10, 1500.5, "2024-06-01 20:00:00", "1980-05-01", 1), (11, 99.99, "2024-07-01 19:30:00", "1980-05-01", 1),
                         (12, 700.0, None, "1991-12-24", 0)]
    assert duck.rows == lite.rows


def test_hostile_candidates_are_refused_and_the_database_is_unchanged(concert, tmp_path):
    db_file = tmp_path / "concert.duckdb"
    before = hashlib.sha256(db_file.read_bytes()).hexdigest()
    listing = sorted(os.listdir(tmp_path))
    gold = "SELECT name FROM singer"
    candidates = [sql.format(folder=tmp_path, probe=PROBE) for sql, _ in HOSTILE_DUCKDB.values()]
    verdicts = verify_sql([SqlCheck(concert, gold, c) for c in candidates], timeout_s=2, workers=2)
    for name, verdict in zip(HOSTILE_DUCKDB, verdicts):
        assert verdict.kind in HOSTILE_DUCKDB[name][1], (name, verdict)
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == listing  # no WAL, no spill folder, no copies, no attached file
    assert not os.path.exists(PROBE)
    # and the connection the workers keep is still a clean, read-only one
    assert verify_sql([SqlCheck(concert, gold, "SELECT name FROM singer")])[0].kind == "correct"


def test_schema_from_the_catalog_in_both_styles(concert):
    assert render_schema(concert, "compact") == (
        "singer(singer_id PK, name, country, born, active)\n"
        "concert(concert_id PK, singer_id, fee, starts)\n"
        "Foreign keys: concert.singer_id = singer.singer_id"
    )
    assert render_schema(concert, "create").splitlines() == [
        "CREATE TABLE singer (singer_id INTEGER, name VARCHAR, country VARCHAR, born DATE, active BOOLEAN, PRIMARY KEY (singer_id))",
        "CREATE TABLE concert (concert_id INTEGER, singer_id INTEGER, fee DECIMAL(8,2), starts TIMESTAMP, "
        "PRIMARY KEY (concert_id), FOREIGN KEY (singer_id) REFERENCES singer (singer_id))",
    ]


def test_jsonl_db_url_relative_to_the_file_and_the_prompt_names_duckdb(concert, tmp_path):
    tasks_file = tmp_path / "tasks.jsonl"
    records = [
        {"id": "a", "question": "Names?", "gold_sql": "SELECT name FROM singer", "db_url": "duckdb://concert.duckdb"},
        {"id": "b", "question": "Bad gold", "gold_sql": "SELECT nope FROM singer", "db_url": "duckdb://concert.duckdb"},
        {"id": "c", "question": "Both", "gold_sql": "SELECT 1", "db_url": "duckdb://concert.duckdb", "db_path": "x.sqlite"},
        {"id": "d", "question": "Missing", "gold_sql": "SELECT 1", "db_url": "duckdb://missing.duckdb"},
    ]
    tasks_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    tasks, skipped = load_sql_tasks(tasks_file)
    assert [t.id for t in tasks] == ["a"]
    assert tasks[0].db_path == concert and tasks[0].db_id == "concert"
    reasons = {s.id: s.reason for s in skipped}
    assert "gold query failed" in reasons["b"] and "not both" in reasons["c"] and "database not found" in reasons["d"]
    content = sql_messages(tasks[0])[0]["content"]
    assert content.endswith("Answer with one DuckDB query in a ```sql code block and nothing else.")
    assert "singer(singer_id PK" in content


def test_db_urls_map_db_ids_to_databases(concert, tmp_path):
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text(json.dumps({"id": "a", "question": "Q", "gold_sql": "SELECT name FROM singer", "db_id": "concert"}) + "\n")
    tasks, _ = load_sql_tasks(tasks_file, db_urls={"concert": concert})
    assert tasks[0].db_path == concert


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The built-in task set copied into DuckDB files: (its folder, the golds left out)."""
    from codelutra.tasks.builtin.export import export_builtin

    folder = tmp_path_factory.mktemp("builtin-duckdb")
    return folder, export_builtin("duckdb", folder)


def test_export_writes_duckdb_copies_and_reports_golds_that_differ(exported):
    folder, skipped = exported
    train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert train and all(r["db_url"].startswith("duckdb://databases/") and "db_path" not in r for r in train)
    written = [json.loads(line) for line in (folder / "skipped.jsonl").read_text().splitlines()]
    assert written == skipped and all(s["reason"] for s in skipped)
    # SQLite's bare columns beside GROUP BY do not carry over: reported, not kept
    assert any("must appear in the GROUP BY" in s["reason"] for s in skipped)
    tasks, failed = load_sql_tasks(folder / "heldout.jsonl", limit=20)
    assert len(tasks) == 20 and not failed  # every gold kept runs on DuckDB in the sandbox


@pytest.mark.slow  # a whole refinement loop on the tiny model
def test_refinement_loop_on_duckdb(exported, tmp_path, tiny_model_dir):
    run_refinement_on(exported[0], tmp_path, tiny_model_dir, dialect="DuckDB")


def test_codelutra_verify_lines_take_a_database_address(concert, tmp_path):
    from codelutra.execution.batch import verify_jsonl

    lines = [
        {"id": 1, "task": "sql", "db": concert, "gold": "SELECT name FROM singer", "candidate": "SELECT name FROM singer"},
        {"id": 2, "task": "sql", "db": concert, "gold": "SELECT name FROM singer", "candidate": "DROP TABLE singer"},
        {"id": 3, "task": "sql", "db": "postgresql://me:secret@db.example/x", "gold": "SELECT 1", "candidate": "SELECT 1"},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    counts = verify_jsonl(tmp_path / "in.jsonl", tmp_path / "out.jsonl", workers=1)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["verdict"] for o in out] == ["correct", "forbidden", "invalid"]
    assert out[2]["detail"].startswith("line 3: field 'db': ") and "password" in out[2]["detail"]
    assert counts["correct"] == counts["forbidden"] == counts["invalid"] == 1


DUCKDB_DIALECT = [
    ("SELECT name FROM singer WHERE country ILIKE 'fr%' AND name GLOB 'J*'", True),
    ("SELECT fee::INTEGER, CAST(fee AS DOUBLE) FROM concert", True),
    ('SELECT "Name" FROM SINGER', True),  # DuckDB matches names in any case, quoted or not
    ('SELECT name FROM singer WHERE country = "France"', False),  # a double-quoted text is a name in DuckDB
    ("SELECT `name` FROM singer", False),
    ("SELECT name FROM singer LIMIT 1, 2", False),
    ("SELECT nme FROM singer", False),
]


@pytest.mark.parametrize(("sql", "accepted"), DUCKDB_DIALECT)
def test_the_grammar_speaks_duckdbs_dialect(concert, tiny_model_dir, sql, accepted):
    assert accepts(load_tokenizer(tiny_model_dir), schema_grammar(concert), sql) == accepted


def test_the_grammar_takes_the_golds_exported_to_duckdb(exported, tiny_model_dir):
    """Every gold query the export kept (it ran on DuckDB), against its database's DuckDB grammar."""
    folder = exported[0]
    rows = [json.loads(line) for split in ("train", "heldout") for line in (folder / f"{split}.jsonl").read_text().splitlines()]
    golds = [("duckdb://" + str(folder / r["db_url"].removeprefix("duckdb://")), r["gold_sql"]) for r in rows]
    rejected = rejected_golds(load_tokenizer(tiny_model_dir), golds)
    assert len(golds) > 400
    assert not rejected, rejected[:10]


def test_a_duckdb_task_is_decoded_under_duckdbs_grammar(concert):
    from codelutra.tasks import Task
    from codelutra.tasks.sql_grammar import prompt_grammars

    [grammar] = prompt_grammars([Task(id="c", question="q", gold="", db_path=concert)], "schema")
    assert grammar == schema_grammar(concert) and '"::"' in grammar and "DQ_STRING | NULL" not in grammar
