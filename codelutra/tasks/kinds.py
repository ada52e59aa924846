"""What differs between SQL and Python tasks, in one place: the loop asks a task's kind, never its language.

A kind gives the chat messages of a task, the answer prefix it starts the model's turn with by
default, the token budget its answers get by default, how gold code is written as an answer, how code is found in what the model wrote, and
how candidates are judged in its sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from codelutra.config import PromptConfig, VerifyConfig
from codelutra.errors import UserError
from codelutra.execution.python import PythonCheck, verify_python
from codelutra.execution.sql import SqlCheck
from codelutra.execution.variants import verify_with_variants
from codelutra.execution.verdict import Verdict
from codelutra.generation.extract import extract_python, extract_sql
from codelutra.generation.types import with_system_prompt
from codelutra.tasks import Task
from codelutra.tasks.prompts import (
    format_answer,
    format_python_answer,
    python_messages,
    sql_messages,
)


@dataclass(frozen=True)
class TaskKind:
    name: str
    default_answer_prefix: str
    # Tokens an answer may take where the config leaves `max_new_tokens` null: above the 99th percentile of the
    # gold answers (code, closing fence, end of turn) in SmolLM2's tokens; the measured values are in the README
    # (benchmarks/token_budgets.py measures them).
    default_max_new_tokens: int
    task_messages: Callable[[Task, PromptConfig], list[dict[str, str]]]  # the task's own turns, no system prompt
    answer: Callable[[str], str]  # gold code -> the answer text a correct completion looks like
    extract: Callable[[str], str | None]  # completion -> code to judge (None: none found)
    check: Callable[[Task, str | None], SqlCheck | PythonCheck]  # task, extracted code -> sandbox check
    # (checks, verify config, progress callback or None) -> verdicts in input order, in one sandbox batch
    verify: Callable[[Sequence, VerifyConfig, Callable[[int], None] | None], list[Verdict]]

    def messages(self, task: Task, prompt: PromptConfig) -> list[dict[str, str]]:
        """The chat messages of `task` under the configured system prompt: what every backend is given."""
        return with_system_prompt(self.task_messages(task, prompt), prompt.system)

    def answer_prefix(self, prompt: PromptConfig) -> str:
        """The configured answer prefix; this kind's own where the config leaves it null."""
        return self.default_answer_prefix if prompt.answer_prefix is None else prompt.answer_prefix

    def max_new_tokens(self, configured: int | None) -> int:
        """The configured token budget (`sampling.` / `eval.max_new_tokens`); this kind's own where it is null."""
        return self.default_max_new_tokens if configured is None else configured


SQL = TaskKind(
    name="sql",
    default_answer_prefix="```sql\n",
    # Covers the built-in sets; Spider and BIRD answers run longer: their configs set `max_new_tokens` (configs/spider.yaml).
    default_max_new_tokens=64,
    task_messages=lambda task, prompt: sql_messages(task, prompt.schema_style),
    answer=format_answer,
    extract=extract_sql,
    check=lambda task, code: SqlCheck(task.db_path, task.gold, code),
    verify=lambda checks, verify, progress: verify_with_variants(
        checks, timeout_s=verify.timeout_s, workers=verify.workers, progress=progress, match=verify.match,
        variants=verify.variants, seed=verify.variant_seed, cache_dir=verify.variants_dir,
    ),
)

PYTHON = TaskKind(
    name="python",
    default_answer_prefix="```python\n",
    default_max_new_tokens=512,
    task_messages=lambda task, prompt: python_messages(task),
    answer=format_python_answer,
    extract=extract_python,
    check=lambda task, code: PythonCheck(
        code, tests=task.tests, setup=task.setup, entry_point=task.entry_point, code_context=task.code_context,
        preamble=task.preamble,
    ),
    verify=lambda checks, verify, progress: verify_python(
        checks, timeout_s=verify.timeout_s, workers=verify.workers, python=verify.python, progress=progress
    ),
)

KINDS = {kind.name: kind for kind in (SQL, PYTHON)}


@dataclass(frozen=True)
class TaskSet(Sequence[Task]):
    """The problems of one source and their one kind, told once when the set is loaded.

    Every loader yields one kind per source; a set keeps its kind when filtered or sliced (`subset`),
    even to nothing, so no stage has to tell it again from the tasks.
    """

    tasks: tuple[Task, ...]
    kind: TaskKind

    @classmethod
    def of(cls, tasks: Iterable[Task]) -> TaskSet:
        """The set of `tasks`, of their one kind (SQL where there are none); mixed kinds are refused."""
        tasks = tuple(tasks)
        names = {task.kind for task in tasks} or {"sql"}
        if len(names) > 1:
            raise UserError(f"a task set mixes kinds ({', '.join(sorted(names))}); load each kind as its own source")
        return cls(tasks, KINDS[names.pop()])

    def subset(self, tasks: Iterable[Task]) -> TaskSet:
        """Some of these problems (kept, drawn): the same kind."""
        return TaskSet(tuple(tasks), self.kind)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index):
        return self.tasks[index]
