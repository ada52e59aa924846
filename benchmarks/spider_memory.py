"""Peak memory of a Spider training stage at its worst: pairs from different databases, the longest prompts that fit.

configs/spider.yaml trains on problems drawn from 118 databases, so the pairs of one step rarely share a
schema, and a packed tree of them is as long as its pairs together. This builds that worst case: one
problem from each of the `--pairs` databases with the longest prompts that fit `train.max_length` (with
room for the answer), each paired against an 80-token-long wrong answer, and trains one epoch on them
with configs/spider.yaml's settings (`--batch-size` and `--accumulation` override the pairs per micro-batch
and micro-batches per step). Each setting runs in a child process of its own (benchmarks/stage.py), whose
peak resident memory is reported: the reference pass over the gold answers, the training, merge and save.

Usage: python benchmarks/spider_memory.py [--pairs 8] [--settings 4x1,1x4] [--results DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from record import REPO, RESULTS, SPIDER, SPIDER_PATHS, provenance, provenance_markdown, write_results
from stage import LIBRARIES, measure

if TYPE_CHECKING:
    from codelutra.candidates import Pair

WRONG = " ".join(["SELECT T1.name FROM employees AS T1 JOIN departments AS T2 ON T1.dept_id = T2.id WHERE"] * 6)


def spider_config():
    from codelutra.config import load_config

    return load_config(REPO / "configs" / "spider.yaml", SPIDER_PATHS)


def worst_case_pairs(pairs: int) -> tuple[list[Pair], list[int]]:
    """One pair from each of the `pairs` databases whose longest fitting prompt is longest; and those prompts' lengths."""
    from codelutra.candidates import Candidate
    from codelutra.config import PairConfig
    from codelutra.generation.types import render_prompt
    from codelutra.models import EMBEDDED_DEFAULT, load_tokenizer, resolve_model
    from codelutra.tasks.kinds import SQL
    from codelutra.tasks.sources import load_tasks
    from codelutra.training.pairs import build_pairs

    cfg = spider_config()
    tasks, _ = load_tasks(cfg.train_tasks.model_copy(update={"limit": None}))
    tokenizer = load_tokenizer(resolve_model(EMBEDDED_DEFAULT))
    prefix = SQL.answer_prefix(cfg.prompt)
    longest: dict[str, tuple[int, object]] = {}
    for task in tasks:
        n = len(tokenizer(render_prompt(tokenizer, SQL.messages(task, cfg.prompt), prefix)).input_ids)
        if n <= cfg.train.max_length - 80 and n > longest.get(task.db_id, (0, None))[0]:
            longest[task.db_id] = (n, task)
    chosen = sorted(longest.values(), key=lambda item: -item[0])[:pairs]
    rows = []
    for _, task in chosen:
        wrong = Candidate(f"{prefix}{WRONG}\n```", problem_id=task.id, verdict="runtime_error")
        rows += build_pairs(SQL.messages(task, cfg.prompt), [wrong], f"{prefix}{task.gold}\n```", answer_prefix=prefix, cfg=PairConfig())
    return rows, [n for n, _ in chosen]


def training_stage(pairs: list[Pair], batch_size: int, accumulation: int) -> int:
    from codelutra.models import EMBEDDED_DEFAULT, resolve_model
    from codelutra.training.trainer import train_policy

    cfg = spider_config().train.model_copy(update={"epochs": 1.0, "batch_size": batch_size, "gradient_accumulation_steps": accumulation})
    out = tempfile.mkdtemp(prefix="spider-memory-")
    try:
        train_policy(resolve_model(EMBEDDED_DEFAULT), pairs, out, cfg)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return len(pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="pairs, each from another database (default 8)")
    parser.add_argument("--settings", default="4x1,1x4", help="pairs per micro-batch x micro-batches per step, comma-separated")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    args = parser.parse_args()
    if not SPIDER.exists():
        print(f"spider_memory: error: no Spider data at {SPIDER} (set CODELUTRA_SHARED_DATA to the folder holding spider/)", file=sys.stderr)
        return 2
    pairs, lengths = measure(worst_case_pairs, args.pairs, preload=LIBRARIES)["value"]
    rows = []
    for setting in args.settings.split(","):
        batch_size, accumulation = (int(x) for x in setting.split("x"))
        m = measure(training_stage, pairs, batch_size, accumulation, preload=LIBRARIES)
        rows.append({"batch_size": batch_size, "accumulation": accumulation, "seconds": round(m["seconds"], 1), "peak_rss_mb": round(m["peak_rss_mb"])})
        print(f"{batch_size} pairs x {accumulation} micro-batches: {m['seconds']:.0f} s, peak RSS {m['peak_rss_mb']:.0f} MB", flush=True)
    result = {"benchmark": "spider_memory", **provenance(), "pairs": len(pairs), "prompt_tokens": lengths, "rows": rows}
    lines = [
        "# Spider training stage memory, worst case", "", provenance_markdown(result),
        f"{len(pairs)} pairs, each from another Spider database, prompts of {min(lengths)}-{max(lengths)} tokens; "
        "configs/spider.yaml's training settings, one epoch.", "",
        "| pairs per micro-batch | micro-batches per step | seconds | peak RSS MB |", "|---:|---:|---:|---:|",
        *(f"| {r['batch_size']} | {r['accumulation']} | {r['seconds']} | {r['peak_rss_mb']} |" for r in rows), "",
    ]
    for path in write_results(Path(args.results), "spider-memory", result, "\n".join(lines)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
