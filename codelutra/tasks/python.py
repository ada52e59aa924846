"""Load Python task sets: MBPP (the original and the sanitized release), HumanEval's layout, DS-1000.

As with SQL, one bad record never stops a load: it is reported as `Skipped` (file, problem, the
field at fault) and left out. Of the problems selected, those the sandbox cannot pass with their
own gold code are skipped too: for DS-1000 first those whose library the verifying interpreter
(`verify.python`) cannot import, checked once per library, then every gold solution against its
tests, in one batch.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from codelutra.artifacts import string_list_field
from codelutra.config import VerifyConfig
from codelutra.console import progress_bar
from codelutra.errors import UserError
from codelutra.execution.python import PythonCheck
from codelutra.tasks import Skipped, Task
from codelutra.tasks.kinds import PYTHON
from codelutra.tasks.records import (
    BadRecord,
    first_record,
    jsonl_records,
    read_json_list,
    record_id,
    require_object,
    require_some,
    select,
    string_field,
)

FORMATS = ("mbpp", "humaneval", "ds1000")
# The file a directory is read from, per format, in order of preference.
DIRECTORY_FILES = {
    "mbpp": ("mbpp.jsonl", "sanitized-mbpp.json"),
    "humaneval": ("HumanEval.jsonl",),
    "ds1000": ("ds1000.jsonl",),
}
# MBPP's own split by task id (Austin et al. 2021): what `databases` selects for MBPP.
MBPP_SPLITS = (("prompt", 1, 10), ("test", 11, 510), ("validation", 511, 600), ("train", 601, 974))
# The module each DS-1000 library is imported as (others: the name in lower case).
DS1000_MODULES = {"Pytorch": "torch", "Sklearn": "sklearn"}

_CODE_TAG_AT_END = re.compile(r"\s*<code>\s*\Z")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def detect_format(path: str | Path) -> str | None:
    """The Python layout of a file or directory from its files' names and first record; None if not one."""
    path = Path(path)
    if path.is_dir():
        return next((fmt for fmt, names in DIRECTORY_FILES.items() if any((path / n).is_file() for n in names)), None)
    if not path.is_file() or path.suffix not in (".json", ".jsonl"):
        return None
    first = first_record(path)
    if not isinstance(first, dict):
        return None
    if "test_list" in first:
        return "mbpp"
    if "entry_point" in first and "canonical_solution" in first:
        return "humaneval"
    if "code_context" in first and "reference_code" in first:
        return "ds1000"
    return None


def load_python_tasks(
    path: str | Path,
    *,
    format: str,
    databases: list[str] | None = None,
    exclude_databases: list[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    verify: VerifyConfig | None = None,
    check_gold: bool = True,
) -> tuple[list[Task], list[Skipped]]:
    """Load a Python task set; selection as for SQL (groups, then a seeded sample), then the sandbox checks."""
    if format not in FORMATS:
        raise UserError(f"unknown Python task format {format!r}: expected one of {', '.join(FORMATS)}")
    file = _locate(Path(path), format)
    parse = {"mbpp": _mbpp_task, "humaneval": _humaneval_task, "ds1000": _ds1000_task}[format]
    if file.suffix == ".jsonl":
        numbered = [(f"line {n}", record) for n, record in jsonl_records(file)]
    else:
        numbered = [(f"record {n}", record) for n, record in enumerate(read_json_list(file), start=1)]

    candidates, skipped, first_seen = [], [], {}
    for where, record in numbered:
        try:
            task = parse(require_object(record))
            if task.id in first_seen:
                raise BadRecord(f"duplicate id, first used on {first_seen[task.id]}")
            first_seen[task.id] = where
        except BadRecord as e:
            skipped.append(Skipped(str(file), _id_of(record) or where, f"{where}: {e}"))
            continue
        candidates.append(task)

    candidates = select(
        file, candidates, databases=databases, exclude_databases=exclude_databases, limit=limit, seed=seed
    )
    if check_gold:
        verify = verify or VerifyConfig()
        if format == "ds1000":
            candidates, unimportable = _drop_unimportable_libraries(file, candidates, verify)
            skipped += unimportable
        candidates, failed = _drop_failing_gold(file, candidates, verify)
        skipped += failed
    require_some(file, candidates, skipped)
    return candidates, skipped


def _locate(path: Path, format: str) -> Path:
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if not path.is_dir():
        return path
    for name in DIRECTORY_FILES[format]:
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path}: no {format} file found; looked for {', '.join(DIRECTORY_FILES[format])}")


# --- one record per layout ------------------------------------------------------------------------


def _mbpp_task(record: dict) -> Task:
    """MBPP: `text` (the sanitized release: `prompt`), `code`, `test_list`, `test_setup_code` or `test_imports`."""
    task_id = _required_id(record, "task_id")
    text = string_field(record, "text" if "text" in record or "prompt" not in record else "prompt")
    tests = _string_list(record, "test_list")
    if not tests:
        raise BadRecord("field 'test_list' is empty")
    if "test_imports" in record:
        setup = "\n".join(_string_list(record, "test_imports"))
    else:
        setup = _code_field(record, "test_setup_code", required=False)
    return Task(
        id=task_id,
        # MBPP's own prompt shows the asserts, so that the model knows the function's name and signature.
        question=f"{text}\nYour code should pass these tests:\n" + "\n".join(tests),
        gold=_code_field(record, "code"),
        db_id=_mbpp_split(task_id),
        kind="python",
        tests=tuple(tests),
        setup=setup,
    )


def _humaneval_task(record: dict) -> Task:
    """HumanEval: the model completes `prompt` (a signature and docstring); `test` defines check(candidate).

    Judged as the official harness does (`prompt + completion`, then `test`, then `check(entry_point)`):
    the prompt comes first in the program, so its imports and helper functions are in scope, and an
    answer that restates the whole function replaces the prompt's stub."""
    prompt = _code_field(record, "prompt")
    solution = _code_field(record, "canonical_solution")
    entry_point = string_field(record, "entry_point")
    if not _IDENTIFIER.fullmatch(entry_point):
        raise BadRecord(f"field 'entry_point' is not a function name: {entry_point[:40]!r}")
    return Task(
        id=_required_id(record, "task_id"),
        question=f"Complete this Python function:\n```python\n{prompt}\n```",
        gold=f"{prompt}\n{solution}",
        kind="python",
        tests=(_code_field(record, "test"),),
        entry_point=entry_point,
        preamble=prompt,
    )


def _ds1000_task(record: dict) -> Task:
    """DS-1000: `prompt`, `reference_code` (inserted into `code_context`'s exec_context), `metadata`."""
    metadata = record.get("metadata")
    if not isinstance(metadata, dict):
        raise BadRecord("missing field 'metadata' (or it is not an object)")
    try:
        problem_id = _required_id(metadata, "problem_id")
        library = string_field(metadata, "library")
    except BadRecord as e:
        raise BadRecord(f"metadata: {e}") from None
    code_context = _code_field(record, "code_context")
    if "def test_execution" not in code_context:
        raise BadRecord("field 'code_context' does not define test_execution(solution)")
    return Task(
        id=problem_id,
        # The prompt ends by opening a <code> tag for a completion model; the instruction asks for a fence instead.
        question=_CODE_TAG_AT_END.sub("", _code_field(record, "prompt")),
        gold=_code_field(record, "reference_code"),
        db_id=library,
        kind="python",
        code_context=code_context,
    )


def _id_of(record: Any) -> str | None:
    """The id a bad record is reported under, where it has a usable one (MBPP, HumanEval, DS-1000)."""
    if not isinstance(record, dict):
        return None
    metadata = record.get("metadata")
    value = record.get("task_id", metadata.get("problem_id") if isinstance(metadata, dict) else None)
    return str(value).strip() if isinstance(value, (str, int)) and str(value).strip() else None


def _required_id(record: dict, name: str) -> str:
    if name not in record:
        raise BadRecord(f"missing field {name!r}")
    return record_id(record, name, "")


def _code_field(record: dict, name: str, *, required: bool = True) -> str:
    """Code as written (leading indentation kept), with Unix line ends and no blank lines around it."""
    if name not in record:
        if required:
            raise BadRecord(f"missing field {name!r}")
        return ""
    value = record[name]
    if not isinstance(value, str):
        raise BadRecord(f"field {name!r} is not a string")
    code = _LEADING_BLANK_LINES.sub("", value.replace("\r\n", "\n")).rstrip()
    if required and not code:
        raise BadRecord(f"field {name!r} is empty")
    return code


def _string_list(record: dict, name: str) -> list[str]:
    """The field's strings, line endings normalised and blank ones dropped."""
    value = string_list_field(record, name, BadRecord)
    return [item.replace("\r\n", "\n").strip() for item in value if item.strip()]


def _mbpp_split(task_id: str) -> str:
    number = int(task_id) if task_id.isdigit() else -1
    return next((name for name, first, last in MBPP_SPLITS if first <= number <= last), "")


# --- what the sandbox can run ---------------------------------------------------------------------


def _drop_unimportable_libraries(file: Path, tasks: list[Task], verify: VerifyConfig) -> tuple[list[Task], list[Skipped]]:
    """Import each library once in the sandbox; skip the problems of those that fail."""
    libraries = sorted({task.db_id for task in tasks})
    modules = [DS1000_MODULES.get(library, library.lower()) for library in libraries]
    verdicts = PYTHON.verify([PythonCheck(f"import {module}") for module in modules], verify, None)
    interpreter = verify.python or sys.executable
    why = {
        library: f"library {library} is not importable with {interpreter}: {verdict.detail or verdict.kind}"
        for library, verdict in zip(libraries, verdicts)
        if verdict.kind != "correct"
    }
    kept = [task for task in tasks if task.db_id not in why]
    return kept, [Skipped(str(file), task.id, why[task.db_id]) for task in tasks if task.db_id in why]


def _drop_failing_gold(file: Path, tasks: list[Task], verify: VerifyConfig) -> tuple[list[Task], list[Skipped]]:
    """Run every gold solution against its tests in one sandboxed batch; keep the tasks it passes."""
    checks = [PYTHON.check(task, task.gold) for task in tasks]
    with progress_bar(f"{file.name}: checking gold solutions", total=len(checks)) as advance:
        verdicts = PYTHON.verify(checks, verify, advance)
    kept, failed = [], []
    for task, verdict in zip(tasks, verdicts):
        if verdict.kind == "correct":
            kept.append(task)
        else:
            failed.append(Skipped(str(file), task.id, f"gold code fails: {verdict.kind}: {verdict.detail}"))
    return kept, failed
