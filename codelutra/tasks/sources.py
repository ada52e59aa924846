"""Turn a task source from the config into problems: the built-in set, or a user's files (SQL or Python)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path

from codelutra.artifacts import write_jsonl
from codelutra.config import TaskSource, VerifyConfig
from codelutra.errors import UserError
from codelutra.models import cache_dir
from codelutra.tasks import Skipped
from codelutra.tasks.kinds import TaskSet

BUILTIN_SPLITS = ("train", "heldout", "heldout-large")
SHOWN_CAUSES = 10  # causes of skipping printed one a line; the others are counted together


def load_tasks(source: TaskSource, verify: VerifyConfig | None = None) -> tuple[TaskSet, list[Skipped]]:
    """Load, filter and sample the problems of one task source; bad problems come back as `Skipped`.

    `verify` is how the gold code is run to check it (time limit, workers; for Python also the interpreter).
    """
    from codelutra.tasks.python import FORMATS as PYTHON_FORMATS
    from codelutra.tasks.python import detect_format, load_python_tasks
    from codelutra.tasks.sql import load_sql_tasks

    path, fmt = source.path, source.format
    if path.startswith("builtin:"):
        split = path.removeprefix("builtin:")
        if split not in BUILTIN_SPLITS:
            raise UserError(f"tasks: unknown built-in split {split!r}; choose one of {', '.join(BUILTIN_SPLITS)}")
        from codelutra.tasks.builtin import BUILTIN_VERSION, build_builtin_tasks

        root = build_builtin_tasks(cache_dir() / f"builtin-v{BUILTIN_VERSION}")
        path, fmt = str(root / f"{split}.jsonl"), "jsonl"
    if fmt == "auto":
        fmt = detect_format(path) or "auto"  # not a Python layout: the SQL loader tells Spider, BIRD and JSONL apart
    selection = dict(databases=source.databases, exclude_databases=source.exclude_databases, limit=source.limit, seed=source.seed)
    if fmt in PYTHON_FORMATS:
        tasks, skipped = load_python_tasks(path, format=fmt, verify=verify, **selection)
    else:
        tasks, skipped = load_sql_tasks(path, format=fmt, db_urls=source.db_urls, verify=verify, **selection)
    return TaskSet.of(tasks), skipped


def skip_summary(skipped: list[Skipped]) -> list[str]:
    """What was skipped, one line per cause (file and reason) with its count, the most frequent first.

    A missing database skips every problem of it for one reason: a line each would bury the rest.
    A cause of one problem names it; past `SHOWN_CAUSES` causes, the rest share one line.
    """
    causes = Counter((s.file, s.reason) for s in skipped)
    one_of = {(s.file, s.reason): s for s in skipped}  # a problem of each cause
    shown = causes.most_common(SHOWN_CAUSES)
    lines = [str(one_of[cause]) if n == 1 else f"{n} problems of {cause[0]}: {cause[1]}" for cause, n in shown]
    rest = causes.most_common()[SHOWN_CAUSES:]
    if rest:
        lines.append(f"{sum(n for _, n in rest)} more problems, for {len(rest)} other causes")
    return lines


def print_skipped(which: str, kept: int, skipped: list[Skipped], details: Path) -> None:
    """Print the problems a task set kept and `skip_summary`; `details` is the file that lists every skipped problem."""
    from rich.markup import escape

    from codelutra.console import console

    for line in skip_summary(skipped):
        console.print(f"[yellow]skipped[/] {escape(line)}", soft_wrap=True)
    listed = f" ({len(skipped)} skipped, each listed in {escape(str(details))})" if skipped else ""
    console.print(f"{escape(which)}: {kept} problems{listed}", soft_wrap=True)


def write_skipped(path: Path, skipped: list[Skipped]) -> None:
    """Every skipped problem, one JSON line each (file, id, reason, detail)."""
    write_jsonl(path, map(asdict, skipped))
