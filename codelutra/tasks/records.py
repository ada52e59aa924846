"""Reading task files, record by record, and choosing which problems to keep: shared by every loader.

A bad record raises `BadRecord` (reported as `Skipped` by the loader); a file that cannot be read
at all, or a selection that leaves nothing, raises `UserError`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codelutra.errors import UserError
from codelutra.tasks import Skipped, Task


class BadRecord(Exception):
    """A record that is reported as skipped; the message is the reason."""


def read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{file}: cannot read: {e}") from None


def read_json_list(file: Path) -> list[Any]:
    try:
        records = json.loads(read_text(file))
    except json.JSONDecodeError as e:
        raise UserError(f"{file}: line {e.lineno} column {e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(records, list):
        raise UserError(f"{file}: expected a JSON list of records, found {type(records).__name__}")
    return records


def jsonl_records(file: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded record) for each non-blank line.

    An undecodable line means the file is broken, not one record, so it raises `UserError`.
    """
    for line_number, line in enumerate(read_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{file}: line {line_number}: invalid JSON: {e.msg}") from None


def first_record(file: Path) -> Any:
    """The first record of a JSONL file or JSON list (None when there is none), to tell its layout."""
    if file.suffix == ".jsonl":
        return next((record for _, record in jsonl_records(file)), None)
    return next(iter(read_json_list(file)), None)


def require_object(record: Any) -> dict:
    if not isinstance(record, dict):
        raise BadRecord(f"record is not a JSON object but {type(record).__name__}")
    return record


def string_field(record: dict, name: str) -> str:
    """A non-empty string field, stripped."""
    if name not in record:
        raise BadRecord(f"missing field {name!r}")
    value = record[name]
    if not isinstance(value, str):
        raise BadRecord(f"field {name!r} is not a string")
    if not value.strip():
        raise BadRecord(f"field {name!r} is empty")
    return value.strip()


def record_id(record: dict, name: str, fallback: str) -> str:
    """The record's id field as a string (numbers allowed); `fallback` when absent."""
    if name not in record:
        return fallback
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise BadRecord(f"field {name!r} is not a non-empty string or integer")
    return str(value).strip()


def select(
    file: Path,
    candidates: list[Task],
    *,
    databases: list[str] | None,
    exclude_databases: list[str] | None,
    limit: int | None,
    seed: int,
) -> list[Task]:
    """Keep the groups asked for (`Task.db_id`), then a `random.Random(seed)` sample of `limit`, in file order."""
    loaded = len(candidates)
    candidates = [
        task
        for task in candidates
        if (databases is None or task.db_id in databases)
        and (exclude_databases is None or task.db_id not in exclude_databases)
    ]
    if loaded and not candidates:
        raise UserError(f"{file}: no problem is on the databases asked for ({databases=}, {exclude_databases=})")
    if limit is not None and limit < len(candidates):
        chosen = sorted(random.Random(seed).sample(range(len(candidates)), limit))
        candidates = [candidates[i] for i in chosen]
    return candidates


def require_some(file: Path, tasks: list[Task], skipped: list[Skipped]) -> None:
    """A load that leaves no task is an error that says why."""
    if not tasks:
        if skipped:
            raise UserError(f"{file}: no task left: skipped {len(skipped)}, the first because: {skipped[0].reason}")
        raise UserError(f"{file}: holds no problems")
