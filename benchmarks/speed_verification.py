"""The speed benchmark's verification stages: the project's sandbox batch against a serial sandboxed loop and an unsafe in-process floor."""

from __future__ import annotations

import functools
import sqlite3
import time
from pathlib import Path

from stage import measure, result_row, with_ratios

from codelutra.config import VerifyConfig
from codelutra.console import console
from codelutra.execution.sql import verify_sql
from codelutra.execution.sql_match import gold_is_ordered, results_match
from codelutra.tasks.kinds import SQL


def sandboxed_serial_stage(checks: list) -> list[str]:
    """The baseline: one candidate at a time, each in a sandbox of its own (`verify_sql` on one check,
    which starts a worker, runs gold and candidate, and ends it): the plain way with the same safety."""
    timeout_s = VerifyConfig().timeout_s
    return [verify_sql([check], timeout_s=timeout_s, workers=1)[0].kind for check in checks]


def in_process_stage(checks: list) -> list[bool]:
    """The floor: in this process, for each candidate open its database read-only, run gold and candidate.

    No sandbox, so not a way to run model output; shown for what the sandbox costs. Judged with the
    project's comparison (`results_match`), so that only the running differs. A deadline per query
    keeps a runaway candidate from stalling the benchmark.
    """
    ordered = functools.cache(gold_is_ordered)
    timeout_s = VerifyConfig().timeout_s
    correct = []
    for check in checks:
        if not check.candidate_sql:
            correct.append(False)
            continue
        db = sqlite3.connect(Path(check.db_path).resolve().as_uri() + "?mode=ro", uri=True)
        deadline = time.monotonic() + timeout_s
        db.set_progress_handler(lambda deadline=deadline: time.monotonic() > deadline, 1000)
        try:
            gold = db.execute(check.gold_sql).fetchall()
            candidate = db.execute(check.candidate_sql).fetchall()
            correct.append(results_match(gold, candidate, ordered=ordered(check.gold_sql)))
        except (sqlite3.Error, ValueError):  # ValueError: a NUL character in the SQL
            correct.append(False)
        finally:
            db.close()
    return correct


def verify_stage(checks: list, workers: int | None) -> list[str]:
    return [v.kind for v in verify_sql(checks, timeout_s=VerifyConfig().timeout_s, workers=workers)]


def measure_verification(tasks: dict, samples: list[dict]) -> tuple[list[dict], list[list[str]]]:
    """Candidates/s of the serial loops and of `verify_sql` (1 worker, one per core); returns the latter's verdicts."""
    checks = [SQL.check(tasks[row["id"]], SQL.extract(c)) for row in samples for c in row["completions"]]
    console.print(f"speed: verifying {len(checks)} candidates")
    serial = measure(sandboxed_serial_stage, checks)
    plain = measure(in_process_stage, checks)
    rows = [
        result_row("serial loop, a sandbox per candidate", len(checks), "candidates", serial),
        result_row("in-process sqlite3 loop, no sandbox", len(checks), "candidates", plain, "not safe for model output: the floor"),
    ]
    for workers, label in ((1, "verify_sql, 1 worker"), (None, "verify_sql, a worker per core")):
        m = measure(verify_stage, checks, workers)
        agree = sum(kind == other for kind, other in zip(m["value"], serial["value"]))
        versus_plain = plain["seconds"] / m["seconds"]
        rows.append(result_row(label, len(checks), "candidates", m, f"{versus_plain:.2g}x the in-process loop; same verdicts as the serial loop on {agree}/{len(checks)}"))
        verdicts = m["value"]  # the last run's (a worker per core) go on to build the training pairs
    per_problem, i = [], 0
    for row in samples:
        per_problem.append(verdicts[i : i + len(row["completions"])])
        i += len(row["completions"])
    return with_ratios(rows, rows[0]), per_problem
