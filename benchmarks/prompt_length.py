"""Prompt length per schema style: the number of tokens of the whole chat prompt the model is given.

Prompt length is most of the cost of a training step on a CPU, which is why `compact` is the default.
Usage: python benchmarks/prompt_length.py [TASKS ...]   (default: builtin:heldout, ../shared/data/spider)
"""

from __future__ import annotations

import sys
from pathlib import Path

from codelutra.config import TaskSource
from codelutra.generation.types import render_prompt
from codelutra.models import EMBEDDED_DEFAULT, load_tokenizer, resolve_model
from codelutra.tasks.prompts import SCHEMA_STYLES, sql_messages
from codelutra.tasks.sources import load_tasks


def main(specs: list[str]) -> None:
    tokenizer = load_tokenizer(resolve_model(EMBEDDED_DEFAULT))
    print(f"| tasks | problems | {' | '.join(f'{s} (mean / max tokens)' for s in SCHEMA_STYLES)} |")
    print("|---|---:|" + "---:|" * len(SCHEMA_STYLES))
    for spec in specs:
        if not spec.startswith("builtin:") and not Path(spec).exists():
            print(f"| {spec} | not found, skipped |")
            continue
        tasks, _ = load_tasks(TaskSource(path=spec, limit=100))
        cells = []
        for style in SCHEMA_STYLES:
            texts = [render_prompt(tokenizer, sql_messages(t, style), "") for t in tasks]
            lengths = [len(tokenizer(text, add_special_tokens=False).input_ids) for text in texts]
            cells.append(f"{sum(lengths) / len(lengths):.0f} / {max(lengths)}")
        print(f"| {spec} | {len(tasks)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["builtin:heldout", "../shared/data/spider"])
