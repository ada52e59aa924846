"""Task sets: what a problem is, and how task sets are loaded from disk."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One problem: a question, its gold code and what is needed to run code for it.

    `id` is unique within a task set and stable across runs (artifacts refer to it). `kind` says
    which language it is and how it is judged (`codelutra.tasks.kinds`); the fields after it are
    the ones that kind needs.
    """

    id: str
    question: str  # what the prompt shows (for Python: the problem as its benchmark states it)
    gold: str  # the reference code
    db_path: str = ""  # SQL: the database's address: a SQLite file's absolute path, duckdb:///..., postgresql://...
    # The group that `databases` / `exclude_databases` select: SQL's database (Spider's db_id),
    # MBPP's split (prompt, test, validation, train), DS-1000's library; "" where there is none.
    db_id: str = ""
    evidence: str = ""  # BIRD's hint, shown in the prompt when present
    kind: str = "sql"  # "sql" or "python"
    tests: tuple[str, ...] = ()  # Python: test code run after the candidate (MBPP's asserts, HumanEval's `test`)
    setup: str = ""  # Python: run after the candidate, before the tests (MBPP's test_setup_code)
    preamble: str = ""  # Python: the start of the program, before the candidate (HumanEval's prompt)
    entry_point: str | None = None  # HumanEval: `check(<entry_point>)` runs after the tests
    code_context: str | None = None  # DS-1000: defines test_execution(solution) and maybe test_string


@dataclass(frozen=True)
class Skipped:
    """A problem that was reported and left out of a task set.

    `reason` is the cause, which problems skipped for the same cause share (they are counted together);
    `detail` what is particular to this problem.
    """

    file: str
    id: str
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.file}: problem {self.id}: {self.reason}" + (f" ({self.detail})" if self.detail else "")
