"""Load text-to-SQL task sets: Spider and BIRD as published, or a simple JSONL file of your own.

A task's database is an address (`codelutra.execution.engines`): a SQLite file, a DuckDB file or a
PostgreSQL database. JSONL records give `db_path` (a SQLite file) or `db_url`; `db_urls` (the task
source's field of that name) maps db_ids to addresses, in place of the files a task set names.

One bad record never stops a load: it is reported as `Skipped` and left out. Only a file that
cannot be read at all, an address holding a password, or a load that leaves no task, raises `UserError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codelutra.config import VerifyConfig
from codelutra.errors import UserError
from codelutra.execution import engines
from codelutra.execution.sql import run_queries
from codelutra.tasks import Skipped, Task
from codelutra.tasks.records import (
    BadRecord,
    jsonl_records,
    read_json_list,
    record_id,
    require_object,
    require_some,
    select,
    string_field,
)

FORMATS = ("auto", "spider", "bird", "jsonl")
# Which questions file a Spider/BIRD directory is read from, in order of preference.
QUESTIONS_FILES = ("dev.json", "train_spider.json", "train.json")
# Where each layout keeps `<db_id>/<db_id>.sqlite`, relative to the questions file's directory.
DATABASE_DIRS = {"spider": ("database",), "bird": ("dev_databases", "train_databases", "database")}
# The field holding the gold query in each layout.
GOLD_FIELDS = {"spider": "query", "bird": "SQL", "jsonl": "gold_sql"}


def load_sql_tasks(
    path: str | Path,
    *,
    format: str = "auto",
    databases: list[str] | None = None,
    exclude_databases: list[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    verify: VerifyConfig | None = None,
    check_gold: bool = True,
    db_urls: dict[str, str] | None = None,
) -> tuple[list[Task], list[Skipped]]:
    """Load the tasks of a Spider/BIRD directory or questions file, or of a JSONL file.

    `db_urls` maps db_ids to database addresses used instead of the databases the task set names.

    Selection, in order: keep the databases asked for, then sample `limit` problems with
    `random.Random(seed)` (kept in file order), then drop those whose gold query fails.
    Returns the tasks and the problems skipped, each with its reason.
    """
    if format not in FORMATS:
        raise UserError(f"unknown task format {format!r}: expected one of {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, got {limit}")
    file, format = _locate(Path(path), format)
    db_urls = {db_id: _checked_address(url, f"db_urls.{db_id}") for db_id, url in (db_urls or {}).items()}

    if format == "jsonl":
        candidates, skipped = _read_jsonl(file, db_urls)
    else:
        records = read_json_list(file)
        if format == "auto":
            first = next((r for r in records if isinstance(r, dict)), {})
            format = "bird" if "SQL" in first and "evidence" in first else "spider"
        candidates, skipped = _parse_spider_or_bird(file, records, format, db_urls)

    candidates = select(
        file, candidates, databases=databases, exclude_databases=exclude_databases, limit=limit, seed=seed
    )
    if check_gold:
        candidates, failed = _drop_failing_gold(file, candidates, verify or VerifyConfig())
        skipped += failed
    require_some(file, candidates, skipped)
    return candidates, skipped


def _locate(path: Path, format: str) -> tuple[Path, str]:
    """The questions file to read, and the format if it is already known from the path alone."""
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_dir():
        if format == "jsonl":
            raise UserError(f"{path}: is a directory; a JSONL task set is a file")
        for name in QUESTIONS_FILES:
            if (path / name).is_file():
                return path / name, format
        raise UserError(f"{path}: no questions file found; looked for {', '.join(QUESTIONS_FILES)}")
    if format == "auto" and path.suffix == ".jsonl":
        return path, "jsonl"
    return path, format


def _checked_address(address: str, where: str) -> str:
    """An address from a config or task file, refused (the whole load) when it holds a password."""
    try:
        engines.check_address(address)
    except engines.BadAddress as error:
        raise UserError(f"{where}: {error}") from None
    return address


def _parse_spider_or_bird(
    file: Path, records: list[Any], format: str, db_urls: dict[str, str]
) -> tuple[list[Task], list[Skipped]]:
    """The tasks of the records and the records skipped."""
    database_dirs = [file.parent / name for name in DATABASE_DIRS[format]]
    db_paths: dict[str, str] = {}  # db_id -> the database address; looked up once per database
    candidates, skipped = [], []
    for index, record in enumerate(records):
        task_id = f"{file.stem}-{index}"
        try:
            record = require_object(record)
            db_id = string_field(record, "db_id")
            if db_id not in db_paths:
                db_paths[db_id] = _resolve(db_urls[db_id], Path.cwd()) if db_id in db_urls else _find_database(
                    [d / db_id / f"{db_id}.sqlite" for d in database_dirs]
                )
            evidence = record.get("evidence", "")
            if not isinstance(evidence, str):
                raise BadRecord("field 'evidence' is not a string")
            task = Task(
                id=task_id,
                question=string_field(record, "question"),
                gold=string_field(record, GOLD_FIELDS[format]),
                db_path=db_paths[db_id],
                db_id=db_id,
                evidence=evidence.strip(),
            )
        except BadRecord as e:
            skipped.append(Skipped(str(file), task_id, str(e)))
            continue
        candidates.append(task)
    return candidates, skipped


def _read_jsonl(file: Path, db_urls: dict[str, str]) -> tuple[list[Task], list[Skipped]]:
    """The tasks of a JSONL file and the records skipped.

    A record's database: `db_urls[db_id]` when the config maps its db_id, else its `db_url` or
    `db_path` (exactly one of them), relative to the file's folder.
    """
    db_paths: dict[str, str] = {}  # address as written -> the database's address, resolved
    first_line_of_id: dict[str, int] = {}
    candidates, skipped = [], []
    for line_number, record in jsonl_records(file):
        task_id = str(line_number)  # what the record is reported under until its own id is known
        try:
            record = require_object(record)
            task_id = record_id(record, "id", str(line_number))
            if task_id in first_line_of_id:
                raise BadRecord(f"line {line_number}: duplicate id, first used on line {first_line_of_id[task_id]}")
            first_line_of_id[task_id] = line_number
            written = _written_address(file, line_number, record, db_urls)
            if written not in db_paths:
                db_paths[written] = _resolve(written, file.parent)
            db_id = record.get("db_id", Path(engines.local_file(written)).stem)
            if not isinstance(db_id, str) or not db_id.strip():
                raise BadRecord("field 'db_id' is empty or not a string")
            task = Task(
                id=task_id,
                question=string_field(record, "question"),
                gold=string_field(record, GOLD_FIELDS["jsonl"]),
                db_path=db_paths[written],
                db_id=db_id,
            )
        except BadRecord as e:
            skipped.append(Skipped(str(file), task_id, str(e)))
            continue
        candidates.append(task)
    return candidates, skipped


def _written_address(file: Path, line_number: int, record: dict, db_urls: dict[str, str]) -> str:
    """The database address a JSONL record names, before it is resolved."""
    if isinstance(record.get("db_id"), str) and record["db_id"] in db_urls:
        return db_urls[record["db_id"]]
    if "db_url" in record and "db_path" in record:
        raise BadRecord("give either 'db_path' or 'db_url', not both")
    if "db_url" not in record:
        return string_field(record, "db_path")
    url = string_field(record, "db_url")
    return _checked_address(url, f"{file}: line {line_number}: field 'db_url'")


def _resolve(address: str, folder: Path) -> str:
    """The address with a SQLite or DuckDB file made absolute (relative to `folder`), checked (`engines.usable_address`)."""
    if engines.engine_of(address) != "postgres":
        address = engines.with_file(address, (folder / engines.local_file(address)).resolve())
    try:
        return engines.usable_address(address)
    except engines.BadAddress as error:
        raise BadRecord(str(error)) from None


def _find_database(looked_for: list[Path]) -> str:
    """The absolute path of the first database file that exists."""
    for path in looked_for:
        if path.is_file():
            return str(path.resolve())
    raise BadRecord(f"database not found: {' or '.join(str(p) for p in looked_for)}")


def _drop_failing_gold(file: Path, candidates: list[Task], verify: VerifyConfig) -> tuple[list[Task], list[Skipped]]:
    """Run every gold query in one sandboxed batch, under `verify`'s limits; keep the tasks whose query runs."""
    results = run_queries(
        [(task.db_path, task.gold) for task in candidates], timeout_s=verify.timeout_s, workers=verify.workers
    )
    kept, failed = [], []
    for task, result in zip(candidates, results):
        if result.kind == "ok":
            kept.append(task)
        else:
            failed.append(Skipped(str(file), task.id, f"gold query failed: {result.error or result.kind}"))
    return kept, failed
