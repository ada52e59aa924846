"""Loading Spider, BIRD and JSONL task sets: layouts, bad records, selection and gold checking."""

import json
import sqlite3
import time
from pathlib import Path

import pytest

from codelutra.errors import UserError
from codelutra.tasks.sql import load_sql_tasks

SPIDER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spider"


def make_db(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE singer (id INT PRIMARY KEY, name TEXT, age INT); INSERT INTO singer VALUES (1, 'Ann', 30);")
    db.commit()
    db.close()
    return path


def write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def spider_dir(root: Path, records, *, questions_file="train_spider.json", db_ids=("music", "films")) -> Path:
    for db_id in db_ids:
        make_db(root / "database" / db_id / f"{db_id}.sqlite")
    write_json(root / questions_file, records)
    return root


def spider_record(db_id="music", question="How many singers?", query="SELECT count(*) FROM singer"):
    return {"db_id": db_id, "question": question, "query": query}


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- Spider layout -------------------------------------------------------------------------------


def test_spider_directory(tmp_path):
    root = spider_dir(tmp_path, [spider_record(), spider_record("films", "Names?", "SELECT name FROM singer;")])
    tasks, skipped = load_sql_tasks(root, check_gold=False)
    assert skipped == []
    assert [t.id for t in tasks] == ["train_spider-0", "train_spider-1"]
    first = tasks[0]
    assert (first.question, first.gold, first.db_id, first.evidence) == ("How many singers?", "SELECT count(*) FROM singer", "music", "")
    assert first.db_path == str((root / "database" / "music" / "music.sqlite").resolve())


def test_spider_questions_file_given_directly_and_dev_preferred(tmp_path):
    root = spider_dir(tmp_path, [spider_record()] * 2)
    write_json(root / "dev.json", [spider_record("films")])
    tasks, _ = load_sql_tasks(root, check_gold=False)
    assert [(t.id, t.db_id) for t in tasks] == [("dev-0", "films")]
    tasks, _ = load_sql_tasks(root / "train_spider.json", format="spider", check_gold=False)
    assert [t.id for t in tasks] == ["train_spider-0", "train_spider-1"]


def test_directory_without_questions_file(tmp_path):
    with pytest.raises(UserError) as excinfo:
        load_sql_tasks(tmp_path)
    message = one_line_error(excinfo)
    assert str(tmp_path) in message and "dev.json" in message and "train_spider.json" in message and "train.json" in message


# --- BIRD layout ---------------------------------------------------------------------------------


def test_bird_directory_with_evidence(tmp_path):
    make_db(tmp_path / "dev_databases" / "school" / "school.sqlite")
    record = {"db_id": "school", "question": "Oldest?", "evidence": "oldest = max(age)", "SQL": "SELECT max(age) FROM singer"}
    write_json(tmp_path / "dev.json", [record, {**record, "evidence": ""}])
    tasks, skipped = load_sql_tasks(tmp_path, check_gold=False)
    assert skipped == []
    assert [t.evidence for t in tasks] == ["oldest = max(age)", ""]
    assert tasks[0].gold == "SELECT max(age) FROM singer"
    assert tasks[0].db_path.endswith("dev_databases/school/school.sqlite")


def test_bird_train_databases(tmp_path):
    make_db(tmp_path / "train_databases" / "shop" / "shop.sqlite")
    write_json(tmp_path / "train.json", [{"db_id": "shop", "question": "Q?", "evidence": "", "SQL": "SELECT 1"}])
    tasks, _ = load_sql_tasks(tmp_path / "train.json", check_gold=False)
    assert tasks[0].db_path.endswith("train_databases/shop/shop.sqlite")
    assert tasks[0].id == "train-0"


# --- JSONL ---------------------------------------------------------------------------------------


def test_jsonl_defaults_and_relative_paths(tmp_path):
    make_db(tmp_path / "dbs" / "shop.sqlite")
    file = tmp_path / "tasks.jsonl"
    file.write_text(
        json.dumps({"question": "Q1?", "gold_sql": "SELECT 1", "db_path": "dbs/shop.sqlite"})
        + "\n\n"
        + json.dumps({"id": 7, "question": "Q2?", "gold_sql": "SELECT 2", "db_path": "dbs/shop.sqlite", "db_id": "store"})
        + "\n",
        encoding="utf-8",
    )
    tasks, skipped = load_sql_tasks(file, check_gold=False)
    assert skipped == []
    assert [(t.id, t.db_id) for t in tasks] == [("1", "shop"), ("7", "store")]
    assert tasks[0].db_path == str((tmp_path / "dbs" / "shop.sqlite").resolve())


def test_jsonl_duplicate_id_is_skipped(tmp_path):
    make_db(tmp_path / "shop.sqlite")
    record = {"id": "a", "question": "Q?", "gold_sql": "SELECT 1", "db_path": "shop.sqlite"}
    tasks, skipped = load_sql_tasks(write_jsonl(tmp_path / "t.jsonl", [record, record]), check_gold=False)
    assert [t.id for t in tasks] == ["a"]
    assert [(s.id, s.reason) for s in skipped] == [("a", "line 2: duplicate id, first used on line 1")]


def test_jsonl_bad_records_are_reported_by_id_or_line(tmp_path):
    make_db(tmp_path / "shop.sqlite")
    records = [
        {"id": "ok", "question": "Q?", "gold_sql": "SELECT 1", "db_path": "shop.sqlite"},
        {"id": "gone", "question": "Q?", "gold_sql": "SELECT 1", "db_path": "dbs/gone.sqlite"},
        "just a string",
        {"question": "Q?", "db_path": "shop.sqlite"},
    ]
    tasks, skipped = load_sql_tasks(write_jsonl(tmp_path / "t.jsonl", records), check_gold=False)
    assert [t.id for t in tasks] == ["ok"]
    assert [(s.id, s.reason) for s in skipped] == [
        ("gone", f"database not found: {tmp_path / 'dbs' / 'gone.sqlite'}"),
        ("3", "record is not a JSON object but str"),
        ("4", "missing field 'gold_sql'"),
    ]


def test_jsonl_undecodable_line_names_the_line(tmp_path):
    file = tmp_path / "t.jsonl"
    file.write_text('{"question": "Q?"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(UserError) as excinfo:
        load_sql_tasks(file)
    assert f"{file}: line 2: invalid JSON" in one_line_error(excinfo)


# --- bad records and bad files ---------------------------------------------------------------------


def test_bad_records_are_skipped_with_reasons(tmp_path):
    records = [
        spider_record(),
        {"db_id": "music", "question": "Q?"},
        spider_record(question="   "),
        spider_record(query=42),
        ["not", "an", "object"],
        spider_record(db_id="gone"),
    ]
    root = spider_dir(tmp_path, records)
    tasks, skipped = load_sql_tasks(root, check_gold=False)
    assert [t.id for t in tasks] == ["train_spider-0"]
    assert [(s.file, s.id) for s in skipped] == [(str(root / "train_spider.json"), f"train_spider-{i}") for i in range(1, 6)]
    reasons = [s.reason for s in skipped]
    assert reasons[:4] == [
        "missing field 'query'",
        "field 'question' is empty",
        "field 'query' is not a string",
        "record is not a JSON object but list",
    ]
    assert reasons[4] == f"database not found: {root / 'database' / 'gone' / 'gone.sqlite'}"


def test_missing_path(tmp_path):
    with pytest.raises(UserError) as excinfo:
        load_sql_tasks(tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in one_line_error(excinfo)


def test_invalid_json_names_file_and_line(tmp_path):
    file = tmp_path / "dev.json"
    file.write_text('[\n{"db_id": "music",\n', encoding="utf-8")
    with pytest.raises(UserError) as excinfo:
        load_sql_tasks(file)
    message = one_line_error(excinfo)
    assert message.startswith(f"{file}: line 3") and "invalid JSON" in message


def test_json_that_is_not_a_list(tmp_path):
    with pytest.raises(UserError, match="expected a JSON list"):
        load_sql_tasks(write_json(tmp_path / "dev.json", {"db_id": "music"}))


def test_no_task_left_says_how_many_were_skipped_and_why(tmp_path):
    root = spider_dir(tmp_path, [spider_record(db_id="gone")] * 3)
    with pytest.raises(UserError) as excinfo:
        load_sql_tasks(root, check_gold=False)
    message = one_line_error(excinfo)
    assert str(root / "train_spider.json") in message and "skipped 3" in message and "database not found" in message


# --- selection -------------------------------------------------------------------------------------


def test_database_filters(tmp_path):
    root = spider_dir(tmp_path, [spider_record("music"), spider_record("films"), spider_record("music")])
    tasks, _ = load_sql_tasks(root, databases=["music"], check_gold=False)
    assert [t.id for t in tasks] == ["train_spider-0", "train_spider-2"]
    tasks, _ = load_sql_tasks(root, exclude_databases=["music"], check_gold=False)
    assert [t.id for t in tasks] == ["train_spider-1"]
    with pytest.raises(UserError, match="no problem is on the databases asked for"):
        load_sql_tasks(root, databases=["musik"], check_gold=False)


def test_limit_is_a_seeded_sample_in_file_order(tmp_path):
    root = spider_dir(tmp_path, [spider_record(question=f"Q{i}?") for i in range(50)])

    def ids(seed):
        return [t.id for t in load_sql_tasks(root, limit=10, seed=seed, check_gold=False)[0]]

    first = ids(0)
    assert len(first) == 10
    assert first == ids(0)
    assert first == sorted(first, key=lambda i: int(i.split("-")[1]))
    assert first != ids(1)
    assert len(load_sql_tasks(root, limit=500, check_gold=False)[0]) == 50


def test_failing_gold_queries_are_skipped_only_among_the_selected(tmp_path):
    records = [
        spider_record("music"),
        spider_record("music", query="SELECT nme FROM singer"),
        spider_record("films", query="SELEC broken"),
    ]
    root = spider_dir(tmp_path, records)
    tasks, skipped = load_sql_tasks(root, databases=["music"])
    assert [t.id for t in tasks] == ["train_spider-0"]
    assert [s.id for s in skipped] == ["train_spider-1"]
    assert skipped[0].reason.startswith("gold query failed: ") and "nme" in skipped[0].reason


# --- the real Spider training split ----------------------------------------------------------------


@pytest.fixture(scope="module")
def spider():
    if not (SPIDER / "train_spider.json").is_file():
        pytest.skip(f"Spider data not found at {SPIDER}: see shared/data/spider/README.md")
    return SPIDER


def test_real_spider_loads_fast(spider):
    started = time.perf_counter()
    tasks, skipped = load_sql_tasks(spider, check_gold=False)
    assert time.perf_counter() - started < 2
    assert (len(tasks), skipped) == (6904, [])
    assert len({t.db_id for t in tasks}) == 138
    assert len({t.id for t in tasks}) == 6904


def test_real_spider_gold_faults_are_reported(spider):
    tasks, skipped = load_sql_tasks(spider, databases=["assets_maintenance", "document_management"])
    assert len(skipped) == 3
    assert all(s.reason.startswith("gold query failed: ") for s in skipped)
    assert tasks and all(t.db_id in ("assets_maintenance", "document_management") for t in tasks)


# --- Database addresses: db_urls on the task source ------------------------------------------------


def test_db_urls_replace_the_databases_a_spider_set_names(tmp_path):
    root = spider_dir(tmp_path / "spider", [spider_record(), spider_record("films")], db_ids=("films",))
    other = make_db(tmp_path / "elsewhere" / "music_copy.sqlite")
    tasks, skipped = load_sql_tasks(root, db_urls={"music": str(other)})
    assert skipped == [] and [t.db_path for t in tasks] == [str(other.resolve()), str(root / "database/films/films.sqlite")]


def test_a_password_in_db_urls_is_refused_naming_the_field(tmp_path):
    from codelutra.config import load_config

    with pytest.raises(UserError) as excinfo:
        load_config(None, ["train_tasks.db_urls={music: 'postgresql://me:secret@db.example/music'}"])
    assert "train_tasks.db_urls" in one_line_error(excinfo) and "password" in str(excinfo.value)
    with pytest.raises(UserError, match=r"db_urls.music: .*password"):
        load_sql_tasks(spider_dir(tmp_path, [spider_record()]), db_urls={"music": "host=h password=x"})


def test_the_skip_summary_counts_problems_per_cause_and_bounds_its_lines():
    from codelutra.tasks import Skipped
    from codelutra.tasks.sources import SHOWN_CAUSES, skip_summary

    missing = [Skipped("dev.json", f"dev-{i}", "database not found: gone.sqlite") for i in range(62)]
    own = [Skipped("dev.json", f"bad-{i}", f"gold query failed: error {i}", detail="x") for i in range(SHOWN_CAUSES + 2)]
    lines = skip_summary(own[:1] + missing + own[1:])
    assert lines[0] == "62 problems of dev.json: database not found: gone.sqlite"
    assert lines[1] == "dev.json: problem bad-0: gold query failed: error 0 (x)"
    assert len(lines) == SHOWN_CAUSES + 1 and lines[-1] == "3 more problems, for 3 other causes"
    assert skip_summary([]) == []
