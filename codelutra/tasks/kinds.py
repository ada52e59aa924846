"""What differs between SQL and Python tasks, in one place: the loop asks a task's kind, never its language.

A kind gives the chat messages of a task, the answer prefix it starts the model's turn with by
default, the token budget its answers get by default, how gold code is written as an answer, how code is found in what the model wrote, and
how candidates are judged in its sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    # Tokens an answer may take where the config leaves `max_new_tokens` null: the 99th percentile of the
    # gold answers (code, closing fence, end of turn) in SmolLM2's tokens, rounded up; see benchmarks/token_budgets.py.
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
    # Built-in sets: p99 53 (train), 57 (held-out), so the default run keeps its 64. Spider train: p99 134, max 254;
    # give Spider/BIRD `max_new_tokens: 160`.
    default_max_new_tokens=64,
    task_messages=lambda task, prompt: sql_messages(task, prompt.schema_style),
    answer=format_answer,
    extract=extract_sql,
    check=lambda task, code: SqlCheck(task.db_path, task.gold, code),
    verify=lambda checks, verify, progress: verify_with_variants(
        checks, timeout_s=verify.timeout_s, workers=verify.workers, progress=progress, match=verify.match,
        variants=verify.variants, seed=verify.variant_seed, cache_dir=verify.variants_dir,
    ),  # fmt: skip
)

PYTHON = TaskKind(
    name="python",
    default_answer_prefix="```python\n",
    # p99: HumanEval 474 (its answers restate the docstring), MBPP 231, DS-1000 187.
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


def kind_of(tasks: Sequence[Task]) -> TaskKind:
    """The one kind of a task set (every loader yields one kind per source)."""
    names = {task.kind for task in tasks} or {"sql"}
    if len(names) > 1:
        raise UserError(f"a task set mixes kinds ({', '.join(sorted(names))}); load each kind as its own source")
    return KINDS[names.pop()]
