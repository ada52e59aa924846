"""The built-in task set: size, the split by database, checked golds, schemas, determinism, atomic builds, variety."""

import json
import re
import sqlite3
from pathlib import Path

import pytest

import codelutra.tasks.builtin as builtin
from codelutra.tasks.builtin import BUILTIN_VERSION, build_builtin_tasks
from codelutra.tasks.builtin.domains import (
    HELDOUT_DOMAINS,
    TRAIN_DOMAINS,
    write_database,
)
from codelutra.tasks.builtin.questions import FAMILIES

RECORD_KEYS = ["id", "question", "gold_sql", "db_path", "db_id"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return build_builtin_tasks(tmp_path_factory.mktemp("cache") / f"builtin-v{BUILTIN_VERSION}")


def read_split(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def all_records(root: Path) -> list[dict]:
    return read_split(root, "train") + read_split(root, "heldout-large")


def table_contents(db_file: Path) -> dict[str, list]:
    """Schema and rows of every table, in a comparable form."""
    db = sqlite3.connect(db_file)
    try:
        tables = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        return {name: [sql] + db.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall() for name, sql in tables}
    finally:
        db.close()


# --- Size, layout and split -----------------------------------------------------------------------


def test_sizes(root):
    train, heldout = read_split(root, "train"), read_split(root, "heldout")
    assert len(train) + len(heldout) >= 600
    assert len(train) >= 450
    assert 150 <= len(heldout) <= 200


def test_large_heldout_is_heldout_and_as_many_new_problems(root):
    heldout, large = read_split(root, "heldout"), read_split(root, "heldout-large")
    assert len(large) == 2 * len(heldout)
    assert [r for r in large if r in heldout] == heldout  # the same records, in the same order
    for db_id in {r["db_id"] for r in heldout}:
        own = [r for r in large if r["db_id"] == db_id]
        assert len(own) == 2 * sum(r["db_id"] == db_id for r in heldout)
        assert [r["id"] for r in own] == [f"{db_id}-{n}" for n in range(1, len(own) + 1)]
    assert {r["db_id"] for r in large} == {r["db_id"] for r in heldout}


def test_records_have_the_documented_fields(root):
    for record in all_records(root):
        assert list(record) == RECORD_KEYS
        assert record["db_path"] == f"databases/{record['db_id']}.sqlite"
        assert (root / record["db_path"]).is_file()
        assert re.fullmatch(rf"{record['db_id']}-\d+", record["id"])
        assert record["question"].strip() and record["gold_sql"].startswith("SELECT ")


def test_train_and_heldout_use_different_databases(root):
    train_dbs = sorted({r["db_id"] for r in read_split(root, "train")})
    heldout_dbs = sorted({r["db_id"] for r in read_split(root, "heldout")})
    assert len(train_dbs) >= 5 and len(heldout_dbs) >= 2
    assert not set(train_dbs) & set(heldout_dbs)


def test_ids_questions_and_golds_are_unique(root):
    records = all_records(root)
    assert len({r["id"] for r in records}) == len(records)
    assert len({(r["db_id"], r["question"]) for r in records}) == len(records)
    assert len({(r["db_id"], r["gold_sql"]) for r in records}) == len(records)


# --- Databases and golds --------------------------------------------------------------------------


def test_schemas_are_small_linked_and_filled(root):
    for db_file in sorted((root / "databases").glob("*.sqlite")):
        db = sqlite3.connect(db_file)
        tables = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
        assert 2 <= len(tables) <= 4, db_file.name
        assert any("FOREIGN KEY" in sql for _, sql in tables), db_file.name
        for name, sql in tables:
            assert "PRIMARY KEY" in sql, name
            assert 4 <= len(db.execute(f"PRAGMA table_info({name})").fetchall()) <= 7, name
            assert 20 <= db.execute(f"SELECT count(*) FROM {name}").fetchone()[0] <= 200, name
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        db.close()


def test_domain_metadata_fits_the_families():
    """Joins name the parent by its label and join on a key of the same name in both tables."""
    for domain in TRAIN_DOMAINS + HELDOUT_DOMAINS:
        for link in domain.links:
            parent, child = domain.table(link.parent), domain.table(link.child)
            assert parent.label is not None, link
            assert [c.name for c in parent.of_kind("key")] == [link.column], link
            assert link.column in [c.name for c in child.of_kind("ref")], link


def test_every_gold_runs_and_gives_a_real_answer(root):
    for record in all_records(root):
        db = sqlite3.connect(f"file:{root / record['db_path']}?mode=ro", uri=True)
        rows = db.execute(record["gold_sql"]).fetchall()
        db.close()
        assert rows, record
        assert rows != [(0,)], record
        assert all(value is not None for row in rows for value in row), record


def test_answer_check_rejects_empty_null_and_zero_answers():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x INTEGER)")
    db.execute("INSERT INTO t VALUES (1)")
    assert builtin.gives_answer(db, "SELECT x FROM t")
    assert not builtin.gives_answer(db, "SELECT x FROM t WHERE x > 5")
    assert not builtin.gives_answer(db, "SELECT avg(x) FROM t WHERE x > 5")
    assert not builtin.gives_answer(db, "SELECT count(*) FROM t WHERE x > 5")
    assert not builtin.gives_answer(db, "SELECT y FROM t")


# --- Families, difficulty and wording -------------------------------------------------------------

SQL_FEATURES = {
    "join": r" JOIN \w+ AS T2 ON T1\.\w+ = T2\.\w+",
    "group by": r" GROUP BY ",
    "having": r" HAVING ",
    "order by limit": r" ORDER BY .* LIMIT \d+$",
    "order without limit": r" ORDER BY \w+( DESC)?$",
    "nested select": r"\(SELECT ",
    "not in": r" NOT IN \(SELECT ",
    "average subquery": r"> \(SELECT avg\(|< \(SELECT avg\(",
    "union": r" UNION SELECT ",
    "intersect": r" INTERSECT SELECT ",
    "except": r" EXCEPT SELECT ",
    "like": r" LIKE '",
    "between": r" BETWEEN ",
    "distinct": r"DISTINCT ",
    "count": r"count\(\*\)",
    "avg": r"avg\(",
    "min max": r"max\(\w+\), min\(",
    "sum": r"sum\(",
    "and": r" AND ",
    "or": r" OR ",
}


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_kind_of_query_is_in_each_split(root, split):
    golds = [r["gold_sql"] for r in read_split(root, split)]
    missing = [name for name, pattern in SQL_FEATURES.items() if not any(re.search(pattern, sql) for sql in golds)]
    assert missing == []


@pytest.mark.parametrize("split, domains", [("train", TRAIN_DOMAINS), ("heldout", HELDOUT_DOMAINS)])
def test_every_family_and_level_share_in_each_split(tmp_path, split, domains):
    made: list[str] = []
    for domain in domains:
        db_path = tmp_path / f"{domain.db_id}.sqlite"
        write_database(domain, db_path)
        made += [problem.family for problem in builtin.generate_problems(domain, db_path, 80)]
    for level, (share, families) in FAMILIES.items():
        names = [family.__name__ for family in families]
        assert [name for name in names if name not in made] == [], level
        assert sum(made.count(name) for name in names) / len(made) == pytest.approx(share, abs=0.02), level


def question_shape(question: str, values: list[str]) -> str:
    """The question with its values (quoted text, data values, numbers, dates) replaced by placeholders."""
    shape = re.sub(r"'[^']*'", "V", question)
    for value in values:
        shape = shape.replace(value, "V")
    return re.sub(r"\d+(\.\d+)?(-\d\d-\d\d)?", "N", shape)


def test_questions_are_varied(root):
    texts = set()
    for db_file in (root / "databases").glob("*.sqlite"):
        for schema_and_rows in table_contents(db_file).values():
            texts.update(value for row in schema_and_rows[1:] for value in row if isinstance(value, str))
    values = sorted(texts, key=len, reverse=True)  # longest first, so "San Diego" goes before "Diego"
    records = all_records(root)
    shapes = {question_shape(r["question"], values) for r in records}
    assert len(shapes) >= 0.8 * len(records)
    # the same query is asked in several ways: "How many students are there?", "Count the students." ...
    plain_counts = {}
    for domain in TRAIN_DOMAINS + HELDOUT_DOMAINS:
        for table in domain.tables:
            plain_counts[(domain.db_id, f"SELECT count(*) FROM {table.name}")] = table.plural
    wordings = {
        r["question"].replace(plain_counts[(r["db_id"], r["gold_sql"])], "T")
        for r in records
        if (r["db_id"], r["gold_sql"]) in plain_counts
    }
    assert len(wordings) >= 4


def test_questions_use_values_from_the_data(root):
    """Quoted and filtered values in golds appear in the question, so the question alone says what to look for."""
    for record in all_records(root):
        for value in re.findall(r"= '([^']*)'", record["gold_sql"]):
            assert value in record["question"], record


# --- Determinism, idempotence, atomicity ----------------------------------------------------------


def test_builds_are_identical(root, tmp_path):
    again = build_builtin_tasks(tmp_path / "again")
    for split in ("train", "heldout", "heldout-large"):
        assert (again / f"{split}.jsonl").read_bytes() == (root / f"{split}.jsonl").read_bytes()
    db_names = sorted(p.name for p in (root / "databases").glob("*.sqlite"))
    assert db_names == sorted(p.name for p in (again / "databases").glob("*.sqlite"))
    for name in db_names:
        assert table_contents(again / "databases" / name) == table_contents(root / "databases" / name)


def modification_times(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_second_call_does_not_rebuild(tmp_path, monkeypatch):
    root = build_builtin_tasks(tmp_path / "set")
    stamps = modification_times(root)

    def must_not_build(directory):
        raise AssertionError("rebuilt an existing task set")

    monkeypatch.setattr(builtin, "_write_task_set", must_not_build)
    assert build_builtin_tasks(tmp_path / "set") == root
    assert modification_times(root) == stamps


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    written = []

    def fail_on_third_database(domain, path):
        if len(written) == 2:
            raise OSError("disk full")
        written.append(domain.db_id)
        write_database(domain, path)

    monkeypatch.setattr(builtin, "write_database", fail_on_third_database)
    with pytest.raises(OSError, match="disk full"):
        build_builtin_tasks(tmp_path / "set")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    root = build_builtin_tasks(tmp_path / "set")
    assert (root / "heldout.jsonl").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
