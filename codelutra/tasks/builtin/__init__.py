"""The built-in text-to-SQL task set: small databases in several domains, with questions made from templates.

It lets codelutra run without downloading a benchmark. `build_builtin_tasks(root)` writes SQLite databases
and train / held-out JSONL files for the SQL task loader. Train and held-out problems use different
databases (as Spider does) but the same question families, so what a model learns on the train databases
can transfer to the held-out ones. Data and questions come from fixed word lists and seeded RNGs, so every
build writes the same content; bump BUILTIN_VERSION whenever that content changes.

`heldout-large` holds the held-out problems and as many new ones again from the same databases (360 in
all): a comparison of two training methods needs that many problems to tell a few points from noise.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import NamedTuple

from .domains import HELDOUT_DOMAINS, TRAIN_DOMAINS, Domain, write_database
from .questions import FAMILIES, Context, Family

BUILTIN_VERSION = 2  # 2: heldout-large added (train and heldout are as in 1)

# (split, its databases, problems per database)
SPLITS = (("train", TRAIN_DOMAINS, 80), ("heldout", HELDOUT_DOMAINS, 90))
LARGE_HELDOUT = "heldout-large"  # heldout, then as many new problems per held-out database
MAX_MISSES = 40  # unusable drafts in a row after which a family counts as used up for a database


class Problem(NamedTuple):
    family: str  # the question family's function name, for reports
    question: str
    sql: str


def build_builtin_tasks(root: str | Path) -> Path:
    """Generate the built-in task set under `root` if it is not already there; return `root`.

    The set is built in a temporary sibling directory and renamed into place, so a crash never leaves
    a half-built set, and `root` counts as built once train.jsonl and heldout.jsonl are there.
    """
    root = Path(root).expanduser()
    if _is_built(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.building-"))
    try:
        _write_task_set(building)
        os.chmod(building, 0o755)  # mkdtemp makes it private; the set is a plain cache
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    try:
        os.replace(building, root)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
        if not _is_built(root):  # `root` holds something else: leave it alone
            raise
        # otherwise another process finished the same build first
    return root


def _is_built(root: Path) -> bool:
    return all((root / f"{split}.jsonl").is_file() for split in (*(s for s, _, _ in SPLITS), LARGE_HELDOUT))


def _write_task_set(directory: Path) -> None:
    (directory / "databases").mkdir()
    splits = {}
    for split, domains, per_database in SPLITS:
        splits[split] = []
        for domain in domains:
            db_path = directory / "databases" / f"{domain.db_id}.sqlite"
            write_database(domain, db_path)
            problems = generate_problems(domain, db_path, per_database)
            splits[split] += [_record(domain, n, problem) for n, problem in enumerate(problems, 1)]
    splits[LARGE_HELDOUT] = _large_heldout(directory, splits["heldout"])
    for split, records in splits.items():
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        (directory / f"{split}.jsonl").write_text(lines, encoding="utf-8")


def _record(domain: Domain, n: int, problem: Problem) -> dict:
    return {
        "id": f"{domain.db_id}-{n}",
        "question": problem.question,
        "gold_sql": problem.sql,
        "db_path": f"databases/{domain.db_id}.sqlite",
        "db_id": domain.db_id,
    }


def _large_heldout(directory: Path, heldout: list[dict]) -> list[dict]:
    """Each held-out database's problems, then as many new ones (questions and golds it does not have yet).

    The new ones come from a larger draw of the same generator, so the difficulty levels keep their shares.
    """
    records = []
    for domain in HELDOUT_DOMAINS:
        own = [record for record in heldout if record["db_id"] == domain.db_id]
        questions, golds = {r["question"] for r in own}, {r["gold_sql"] for r in own}
        drawn = generate_problems(domain, directory / "databases" / f"{domain.db_id}.sqlite", 2 * len(own))
        new = [p for p in drawn if p.question not in questions and p.sql not in golds][: len(own)]
        if len(new) < len(own):
            raise RuntimeError(f"built-in tasks: {domain.db_id} has {len(new)} new problems for {LARGE_HELDOUT}, not {len(own)}")
        records += own + [_record(domain, len(own) + n, problem) for n, problem in enumerate(new, 1)]
    return records


def generate_problems(domain: Domain, db_path: Path, count: int) -> list[Problem]:
    """`count` checked problems for one database, shared among the difficulty levels, in a seeded shuffled order."""
    rng = random.Random(f"codelutra-builtin/{domain.db_id}/questions")
    db = sqlite3.connect(Path(db_path).resolve().as_uri() + "?mode=ro", uri=True)  # golds only read
    try:
        context = Context(domain, db, rng)
        problems: list[Problem] = []
        seen_questions: set[str] = set()  # for membership only; output order never comes from a set
        seen_golds: set[str] = set()
        levels = list(FAMILIES.values())
        for index, (share, families) in enumerate(levels):
            quota = count - len(problems) if index == len(levels) - 1 else round(count * share)
            problems += _draw(context, families, quota, seen_questions, seen_golds)
        rng.shuffle(problems)
        return problems
    finally:
        db.close()


def _draw(
    context: Context, families: list[Family], quota: int, seen_questions: set[str], seen_golds: set[str]
) -> list[Problem]:
    """Take one new problem from each family in turn until there are `quota`; a family that keeps missing drops out."""
    live = list(families)
    problems: list[Problem] = []
    while len(problems) < quota:
        if not live:
            raise RuntimeError(f"built-in tasks: the families ran out of new questions for {context.domain.db_id}")
        family = live[len(problems) % len(live)]
        problem = _new_problem(context, family, seen_questions, seen_golds)
        if problem is None:
            live.remove(family)
            continue
        seen_questions.add(problem.question)
        seen_golds.add(problem.sql)
        problems.append(problem)
    return problems


def _new_problem(context: Context, family: Family, seen_questions: set[str], seen_golds: set[str]) -> Problem | None:
    """A draft from `family` that is new and passes the check, or None after MAX_MISSES tries."""
    for _ in range(MAX_MISSES):
        draft = family(context)
        if draft is None or draft.question in seen_questions or draft.sql in seen_golds:
            continue
        if gives_answer(context.db, draft.sql):
            return Problem(family.__name__, draft.question, draft.sql)
    return None


def gives_answer(db: sqlite3.Connection, sql: str) -> bool:
    """Whether a gold query runs and says something: some rows, no NULL (an aggregate over nothing), not a bare 0."""
    try:
        rows = db.execute(sql).fetchall()
    except sqlite3.Error:
        return False
    return bool(rows) and rows != [(0,)] and all(value is not None for row in rows for value in row)
