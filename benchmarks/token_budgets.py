"""Measure the token budget each task kind needs: gold answers' lengths in SmolLM2's tokens.

    python benchmarks/token_budgets.py SET=PATH ...   e.g. mbpp=../shared/data/mbpp humaneval=DIR sql=builtin:train

A gold answer is counted as the model would write it after the answer prefix: the code, the closing
fence and the end-of-turn token. Prints count, median, 90th and 99th percentile and maximum per set;
`TaskKind.default_max_new_tokens` is set from these figures (see its comment).
"""

from __future__ import annotations

import sys

import numpy as np

from codelutra.config import TaskSource
from codelutra.models import EMBEDDED_DEFAULT, load_tokenizer, resolve_model


def gold_answer_tokens(source: TaskSource, tokenizer) -> list[int]:
    from codelutra.tasks.kinds import KINDS
    from codelutra.tasks.python import FORMATS as PYTHON_FORMATS
    from codelutra.tasks.python import detect_format, load_python_tasks
    from codelutra.tasks.sources import load_tasks
    from codelutra.tasks.sql import load_sql_tasks

    fmt = detect_format(source.path)
    if source.path.startswith("builtin:"):
        tasks, _ = load_tasks(source)
    elif fmt in PYTHON_FORMATS:
        tasks, _ = load_python_tasks(source.path, format=fmt, check_gold=False)
    else:
        tasks, _ = load_sql_tasks(source.path, check_gold=False)
    lengths = []
    for task in tasks:
        kind = KINDS[task.kind]
        answer = kind.answer(task.gold).removeprefix(kind.default_answer_prefix)
        lengths.append(len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1)  # + end of turn
    return lengths


def main(argv: list[str]) -> None:
    tokenizer = load_tokenizer(resolve_model(EMBEDDED_DEFAULT))
    print(f"{'set':<12} {'n':>5} {'median':>7} {'p90':>5} {'p99':>5} {'max':>5}")
    for item in argv:
        name, _, path = item.partition("=")
        lengths = np.array(gold_answer_tokens(TaskSource(path=path), tokenizer))
        p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
        print(f"{name:<12} {len(lengths):>5} {p50:>7.0f} {p90:>5.0f} {p99:>5.0f} {lengths.max():>5}")


if __name__ == "__main__":
    main(sys.argv[1:])
