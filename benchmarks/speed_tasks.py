"""The speed benchmark's problems: a task set's configuration and training pool, as a run on it starts from them."""

from __future__ import annotations

from record import REPO, SPIDER_PATHS

from codelutra.config import RunConfig, load_config
from codelutra.tasks.sources import load_tasks

# Task sets: the config file a run on them starts from (training pool, prompt, token budget, max_length), and overrides.
TASK_SETS = {"builtin": (None, []), "spider": (REPO / "configs" / "spider.yaml", SPIDER_PATHS)}


def task_config(task_set: str, overrides: list[str] = ()) -> RunConfig:
    """The configuration a run on this task set starts from (the defaults, or configs/spider.yaml)."""
    path, paths = TASK_SETS[task_set]
    return load_config(path, [*paths, *overrides])


def train_tasks(task_set: str, problems: int | None = None) -> list:
    """The task set's training pool, database after database (each in the pool's order): a batch of the loop's."""
    source = task_config(task_set).train_tasks
    tasks, _ = load_tasks(source.model_copy(update={"limit": None}))
    return sorted(tasks, key=lambda t: t.db_id)[:problems]


def tasks_of(task_set: str, samples: list[dict]) -> dict:
    """The training tasks the samples answer, by id."""
    tasks = {t.id: t for t in train_tasks(task_set)}
    unknown = [row["id"] for row in samples if row["id"] not in tasks]
    if unknown:
        raise SystemExit(f"speed: samples for problems that are not in the {task_set} training pool, e.g. {unknown[0]!r}")
    return tasks
