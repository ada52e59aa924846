"""Turn a task source from the config into problems: the built-in set, or a user's files (SQL or Python)."""

from __future__ import annotations

from codelutra.config import TaskSource, VerifyConfig
from codelutra.errors import UserError
from codelutra.models import cache_dir
from codelutra.tasks import Skipped
from codelutra.tasks.kinds import TaskSet

BUILTIN_SPLITS = ("train", "heldout")


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
