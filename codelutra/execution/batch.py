"""Judge a JSONL file of candidates in the sandboxes: what `codelutra verify` runs.

Input, one JSON object a line (blank lines are skipped):

    {"id": ..., "task": "sql", "db": PATH, "gold": SQL, "candidate": SQL or null}
    {"id": ..., "task": "python", "candidate": CODE or null, "tests": [CODE, ...], "setup": CODE, "entry_point": NAME,
     "preamble": CODE}
    {"id": ..., "task": "ds1000", "candidate": CODE or null, "code_context": CODE}

("setup", "entry_point" and "preamble" are optional; "preamble" is the program's start before the candidate, as
HumanEval's prompt is for its completions, the way the official harness runs them; "db" is a database address as given: a SQLite path (or
`sqlite:///path`), relative to the working dir, `duckdb:///file.duckdb` or `postgresql://user@host/db`,
never with a password.)
Output: one line per input line, in input order, {"id", "verdict", "detail", "seconds"}. A line
that cannot be judged (not JSON, a field missing or of the wrong type, an unknown task) gets the
verdict "invalid" and a detail naming the line and the field; the batch goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

from codelutra.artifacts import string_list_field, write_jsonl
from codelutra.errors import UserError
from codelutra.execution.engines import BadAddress, usable_address
from codelutra.execution.limits import DEFAULT_TIMEOUT_S
from codelutra.execution.python import PythonCheck, verify_python
from codelutra.execution.sql import SqlCheck
from codelutra.execution.variants import verify_with_variants
from codelutra.execution.verdict import VERDICT_KINDS, Verdict

INVALID = "invalid"  # the verdict on a line that cannot be judged; not one of VERDICT_KINDS
TASKS = ("sql", "python", "ds1000")


class _BadField(ValueError):
    """A field of an input line is missing or of the wrong type; the message names it."""


def verify_jsonl(
    in_path: str | Path,
    out_path: str | Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    python: str | None = None,
    match: str = "execution",
    variants: int = 0,
    variant_seed: int = 0,
    variants_dir: str | None = None,
) -> dict[str, int]:
    """Judge every candidate in `in_path`, write the verdicts to `out_path` (atomically).

    Returns the number of verdicts of each kind, every kind listed (VERDICT_KINDS, then "invalid").
    SQL candidates run in one batch, Python and DS-1000 ones in another, each judged as `run` and `eval`
    judge their kind (time limit, workers, `python`, and for SQL the scoring rule `match` and `variants`).
    A file without a single candidate is the user's error: nothing is written.
    """
    parsed = [_parse(number, line) for number, line in _read_lines(in_path)]
    if not parsed:
        raise UserError(f"{in_path}: no candidates (the file is empty or holds only blank lines); nothing written")
    ids = [record_id for record_id, _ in parsed]
    checks = [check for _, check in parsed]

    verdicts = [Verdict(INVALID, check, 0.0) if isinstance(check, str) else None for check in checks]
    sql = [i for i, check in enumerate(checks) if isinstance(check, SqlCheck)]
    code = [i for i, check in enumerate(checks) if isinstance(check, PythonCheck)]
    scoring = dict(match=match, variants=variants, seed=variant_seed, cache_dir=variants_dir)
    sql_verdicts = verify_with_variants([checks[i] for i in sql], timeout_s=timeout_s, workers=workers, **scoring)
    code_verdicts = verify_python([checks[i] for i in code], timeout_s=timeout_s, workers=workers, python=python)
    for position, verdict in zip(sql + code, sql_verdicts + code_verdicts):
        verdicts[position] = verdict

    write_jsonl(
        out_path,
        (
            {"id": record_id, "verdict": v.kind, "detail": v.detail, "seconds": round(v.seconds, 3)}
            for record_id, v in zip(ids, verdicts)
        ),
    )
    counts = dict.fromkeys((*VERDICT_KINDS, INVALID), 0)
    for verdict in verdicts:
        counts[verdict.kind] += 1
    return counts


def _read_lines(path: str | Path) -> list[tuple[int, bytes]]:
    """(line number, line) for each non-blank line; a file that cannot be read is the user's to fix."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read the candidates file ({error.strerror or error})") from None
    return [(number, line) for number, line in enumerate(data.splitlines(), 1) if line.strip()]


def _parse(number: int, line: bytes) -> tuple[object, SqlCheck | PythonCheck | str]:
    """(id, check) for one input line; the check is a string saying what is wrong when the line is invalid."""
    try:
        record = json.loads(line)
    except ValueError as error:  # not JSON, or not UTF-8
        return None, f"line {number}: not valid JSON ({error})"
    if not isinstance(record, dict):
        return None, f"line {number}: not a JSON object"
    record_id = record.get("id")
    try:
        if "id" not in record:
            raise _BadField("missing field 'id'")
        task = record.get("task")
        if task == "sql":
            check = SqlCheck(_address(record, "db"), _text(record, "gold"), _code(record, "candidate"))
        elif task == "python":
            check = PythonCheck(
                _code(record, "candidate"),
                tests=tuple(string_list_field(record, "tests", _BadField)),
                setup=_text(record, "setup", default=""),
                entry_point=_text(record, "entry_point", default=None),
                preamble=_text(record, "preamble", default=""),
            )
        elif task == "ds1000":
            check = PythonCheck(_code(record, "candidate"), code_context=_text(record, "code_context"))
        else:
            raise _BadField(f"field 'task' must be one of {', '.join(TASKS)} (got {json.dumps(task)[:40]})")
    except _BadField as error:
        return record_id, f"line {number}: {error}"
    return record_id, check


_REQUIRED = object()


def _text(record: dict, name: str, *, default: object = _REQUIRED) -> str:
    """A string field; `default` (None allowed) when it is optional and absent or null."""
    value = record.get(name)
    if value is None and default is not _REQUIRED:
        return default
    if name not in record:
        raise _BadField(f"missing field '{name}'")
    if not isinstance(value, str):
        raise _BadField(f"field '{name}' must be a string")
    return value


def _address(record: dict, name: str) -> str:
    try:
        return usable_address(_text(record, name))
    except BadAddress as error:
        raise _BadField(f"field '{name}': {error}") from None


def _code(record: dict, name: str) -> str | None:
    """A candidate: the field must be there, but may be null (nothing extracted)."""
    if name not in record:
        raise _BadField(f"missing field '{name}'")
    return _text(record, name, default=None)


