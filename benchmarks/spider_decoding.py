"""Answers that run on databases the model never saw: four ways to decode, on every held-out Spider question.

configs/spider.yaml holds 20 Spider databases out of training; their 1,042 questions are what a user's own
database looks like to the model. Each model (the embedded base model, and any refined one given with --model)
answers them four ways: greedy; greedy under the schema's grammar (`generation.constrain: schema`); execution-
guided voting over --vote sampled queries (`eval.vote`); and that voting under the grammar. Per cell: execution
accuracy and the verdict mix (how many answers did not run, and why). Each model's two evaluations (unconstrained
and constrained, each greedy and voted) are `codelutra eval` folders under OUTPUT/runs/spider-decoding/, which
resume where they stopped. `--vote 0` gives the two greedy rows only: the base model rambles to the token budget,
so voting it over 8 samples of 1,042 questions is about an hour of a 2-core CPU per row.

Usage: python benchmarks/spider_decoding.py [--model RUN/iter_K/model ...] [--no-base] [--vote 8] [--limit N]
       [--constrain none,schema,scope] [--backend transformers|vllm] [--output DIR] [--results DIR] [--tag T]
Results: benchmarks/results/spider-decoding[-TAG].{json,md}
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from record import REPO, RESULTS, SPIDER, SPIDER_PATHS, provenance, provenance_markdown, write_results

from codelutra.config import load_config
from codelutra.console import console
from codelutra.errors import UserError
from codelutra.execution.verdict import VERDICT_KINDS
from codelutra.loop.evaluate import evaluate_model
from codelutra.loop.stages import prompts_that_fit
from codelutra.models import EMBEDDED_DEFAULT, resolve_model
from codelutra.tasks.sources import load_tasks

CONFIG = REPO / "configs" / "spider.yaml"
KINDS = VERDICT_KINDS  # every verdict a column: the base model's writes are `forbidden`


def main() -> int:
    args = _parser().parse_args()
    if not SPIDER.exists():
        print(f"spider_decoding: error: no Spider data at {SPIDER} (set CODELUTRA_SHARED_DATA to the folder holding spider/)", file=sys.stderr)
        return 2
    if unknown := set(args.constrain.split(",")) - {"none", "schema", "scope"}:
        print(f"spider_decoding: error: --constrain: unknown {', '.join(sorted(unknown))} (none, schema, scope)", file=sys.stderr)
        return 2
    models = ([] if args.no_base else [EMBEDDED_DEFAULT]) + args.model
    if not models:
        print("spider_decoding: error: no model to evaluate (--no-base needs --model)", file=sys.stderr)
        return 2
    try:
        cfg = spider_config(args, "none")
        questions = load_tasks(cfg.eval_tasks, cfg.verify)  # the golds checked once, for every model
        rows = [row for model in models for row in evaluate_four_ways(model, questions, args)]
    except UserError as e:
        print(f"spider_decoding: error: {e}", file=sys.stderr)
        return 2
    result = {"benchmark": "spider_decoding", **provenance(), "vote": args.vote, "backend": args.backend, "rows": rows}
    stem = "spider-decoding" + (f"-{args.tag}" if args.tag else "")
    for path in write_results(Path(args.results), stem, result, markdown(result)):
        console.print(f"wrote {path}")
    print(markdown(result).split("\n\n", 2)[2])
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="a refined model (RUN_DIR/iter_K/model, a folder or Hub id); repeatable")
    parser.add_argument("--no-base", action="store_true", help="leave out the embedded base model")
    parser.add_argument("--vote", type=int, default=8, help="candidates per question for voting (default 8; 0: greedy rows only)")
    parser.add_argument("--limit", type=int, default=None, help="a fixed random sample of this many questions (default: all)")
    parser.add_argument("--constrain", default="none,schema", help="the decodings' constraints (default none,schema; also scope)")
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers", help="how to generate")
    parser.add_argument("--output", default=str(REPO / "benchmarks"), help="folder that runs/ goes into (default: benchmarks/)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    parser.add_argument("--tag", help="suffix of the result files")
    return parser


def spider_config(args, constrain: str):
    """configs/spider.yaml with the data's paths, the question count, the vote, the backend and the constraint."""
    overrides = [*SPIDER_PATHS, f"eval_tasks.limit={args.limit or 'null'}", f"eval.vote={args.vote}"]
    return load_config(CONFIG, [*overrides, f"generation.constrain={constrain}", f"generation.backend={args.backend}"])


def evaluate_four_ways(model: str, questions: tuple, args) -> list[dict]:
    """The model's four rows: greedy and voted, each without and with the schema's grammar.

    `questions`: the held-out tasks and the problems skipped (`load_tasks`), the same for every model.
    """
    path = resolve_model(model)
    cfg = spider_config(args, "none")
    tasks, skipped = questions
    tasks, too_long = prompts_that_fit(
        tasks, path, source=cfg.eval_tasks.path, prompt=cfg.prompt,
        max_new_tokens=tasks.kind.max_new_tokens(cfg.eval.max_new_tokens), generation=cfg.generation,
    )  # fmt: skip
    rows = []
    for constrain in args.constrain.split(","):
        cfg = spider_config(args, constrain)
        folder = Path(args.output) / "runs" / "spider-decoding" / f"{_slug(model)}-{constrain}"
        console.rule(f"spider decoding: {model}, constrain {constrain}, {len(tasks)} questions")
        result = evaluate_model(
            path, tasks, folder, prompt=cfg.prompt, eval_cfg=cfg.eval, verify=cfg.verify, generation=cfg.generation,
            label=f"{_slug(model)} {constrain}", skipped=skipped + too_long,
        )  # fmt: skip
        grammar = {"none": "", "schema": " + grammar", "scope": " + scoped grammar"}[constrain]
        parts = [("greedy", result)] + ([(f"vote@{args.vote}", result["voted"])] if args.vote else [])
        for decoding, part in parts:
            rows.append({
                "model": model,
                "decoding": decoding + grammar,
                "n": part["n"],
                "accuracy": part["accuracy"],
                "counts": part["counts"],
                "seconds": part["seconds"],
                "folder": str(folder),
            })
    return rows


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model.strip("/")).strip("_")[-60:]


def markdown(result: dict) -> str:
    lines = [
        "# Spider's held-out databases: four ways to decode",
        "",
        provenance_markdown(result),
        "",
        f"Questions of configs/spider.yaml's 20 held-out databases; execution accuracy; vote: {result['vote']} candidates "
        f"at temperature 0.8; backend {result['backend']}. Counts: the verdict of each answer (runtime_error: did not run, "
        "e.g. a table or column that does not exist).",
        "",
        "| model | decoding | n | accuracy | " + " | ".join(KINDS[1:]) + " | seconds |",
        "|---|---|---:|---:|" + "---:|" * (len(KINDS) - 1) + "---:|",
    ]
    for r in result["rows"]:
        counts = " | ".join(str(r["counts"].get(kind, 0)) for kind in KINDS[1:])
        lines.append(f"| {r['model']} | {r['decoding']} | {r['n']} | {r['accuracy']:.1%} | {counts} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
