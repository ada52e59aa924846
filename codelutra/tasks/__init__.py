"""Task sets: what a problem is, and how task sets are loaded from disk."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One problem: a question, its gold code and what is needed to run code for it.

    `id` is unique within a task set and stable across runs (artifacts refer to it).
    """

    id: str
    question: str
    gold: str
    db_path: str  # absolute path of the SQLite database the SQL runs against
    db_id: str  # name of the database (Spider's db_id); used to split train / held-out by database
    evidence: str = ""  # BIRD's hint, shown in the prompt when present


@dataclass(frozen=True)
class Skipped:
    """A problem that was reported and left out of a task set."""

    file: str
    id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: problem {self.id}: {self.reason}"
