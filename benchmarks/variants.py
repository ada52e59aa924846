"""How many greedy answers are right only by coincidence? Judge the same answers without and with database variants.

A model answers every problem once (greedy, as `codelutra eval` does); the answers are then judged
twice: on each task's database alone (`verify.variants=0`), and on it and K perturbed copies
(`verify.variants=K`, `codelutra/execution/variants.py`). An answer correct the first time but not
the second matched the gold by coincidence on that one database. The table gives both counts and
the difference, and the results JSON lists those answers with the detail that caught them.

Answers are generated once into OUTPUT/variants-<model>__<tasks>/eval_samples.jsonl and reused on
a second run (`--samples FILE` judges given answers instead: rows of id and completions). The
variants go to the configured `verify.variants_dir`, else beside the answers.

Usage: python benchmarks/variants.py [--model M] [--tasks builtin:heldout] [--limit N] [--variants K]
       [--samples FILE] [--output DIR] [--results DIR] [--tag T] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from record import REPO, RESULTS, provenance, provenance_markdown, write_results
from rich.table import Table

from codelutra.artifacts import read_jsonl
from codelutra.candidates import Candidate, sampled_candidates
from codelutra.config import TaskSource, VerifyConfig, load_config
from codelutra.console import console, tables
from codelutra.errors import UserError
from codelutra.generation.types import SamplingParams
from codelutra.loop.stages import generate_completions, judge_completions
from codelutra.models import EMBEDDED_DEFAULT, resolve_model
from codelutra.tasks.kinds import SQL
from codelutra.tasks.sources import load_tasks


def main() -> int:
    args = _parser().parse_args()
    try:
        result = measure(args)
    except UserError as e:
        print(f"variants.py: error: {e}", file=sys.stderr)
        return 2
    tables.print(summary_table(result))
    stem = f"variants-{_slug(args.tasks)}-k{args.variants}" + (f"-{args.tag}" if args.tag else "")
    for path in write_results(Path(args.results), stem, result, markdown(result)):
        console.print(f"wrote {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=EMBEDDED_DEFAULT, help="model directory or Hub id (default: the embedded default)")
    parser.add_argument("--tasks", default="builtin:heldout", help="task source (default: builtin:heldout)")
    parser.add_argument("--limit", type=int, default=100, help="a fixed random sample of this many problems (default 100, the default run's held-out sample)")
    parser.add_argument("--variants", type=int, default=3, help="K, the perturbed copies of each database (default 3)")
    parser.add_argument("--samples", default=None, help="judge these answers (JSONL: id, completions) instead of generating")
    parser.add_argument("--output", default=str(REPO / "benchmarks"), help="folder for the answers and variants (default: benchmarks/)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    parser.add_argument("--tag", default="", help="suffix of the result files' names")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (prompt, eval, verify)")
    return parser


def measure(args) -> dict:
    """Generate (or read) the answers, judge them with 0 and K variants, and compare."""
    if args.variants < 1:
        raise UserError(f"--variants {args.variants}: give at least 1 copy to compare against")
    cfg = load_config(None, args.set)
    tasks, skipped = load_tasks(TaskSource(path=args.tasks, limit=args.limit), cfg.verify)
    if not tasks or tasks.kind is not SQL:
        raise UserError(f"--tasks {args.tasks}: database variants need SQL tasks")
    work = Path(args.output) / f"variants-{_slug(args.model)}__{_slug(args.tasks)}-{len(tasks)}"
    start = time.monotonic()
    if args.samples:
        samples = _given_samples(Path(args.samples), tasks)
    else:
        samples = generate_completions(
            resolve_model(args.model), tasks, work / "eval_samples.jsonl", prompt=cfg.prompt,
            params=SamplingParams(max_new_tokens=SQL.max_new_tokens(cfg.eval.max_new_tokens), batch_size=cfg.eval.batch_size),
            description="generating (greedy)",
        )
    generate_s = time.monotonic() - start
    tag = "given" if args.samples else "greedy"
    plain = cfg.verify.model_copy(update={"variants": 0})
    with_variants = cfg.verify.model_copy(
        update={"variants": args.variants, "variants_dir": cfg.verify.variants_dir or str(work / "variants")}
    )
    (work / f"verdicts-{tag}-k0.jsonl").unlink(missing_ok=True)  # judged afresh: the judging is what is measured
    (work / f"verdicts-{tag}-k{args.variants}.jsonl").unlink(missing_ok=True)
    alone, alone_s = _judge(tasks, samples, work / f"verdicts-{tag}-k0.jsonl", plain, "verifying on the databases")
    on_variants, variants_s = _judge(tasks, samples, work / f"verdicts-{tag}-k{args.variants}.jsonl", with_variants, f"verifying on the databases and {args.variants} variants")
    by_id = {t.id: t for t in tasks}
    caught = [
        {"id": a.problem_id, "question": by_id[a.problem_id].question, "gold": by_id[a.problem_id].gold, "sql": a.code, "detail": v.detail}
        for [a], [v] in zip(alone, on_variants)
        if a.correct and not v.correct
    ]
    correct_alone = sum(a.correct for [a] in alone)
    correct_variants = sum(v.correct for [v] in on_variants)
    return {
        "benchmark": "variants",
        **provenance(),
        "settings": {
            "model": args.model, "tasks": args.tasks, "limit": args.limit, "problems": len(tasks),
            "skipped_problems": len(skipped), "answers": "given: " + args.samples if args.samples else "greedy",
            "variants": args.variants, "variant_seed": cfg.verify.variant_seed, "match": cfg.verify.match,
            "max_new_tokens": SQL.max_new_tokens(cfg.eval.max_new_tokens),
        },
        "correct_on_the_database": correct_alone,
        "correct_on_all_variants": correct_variants,
        "difference": correct_alone - correct_variants,
        "seconds": {"generate": round(generate_s, 1), "judge_alone": round(alone_s, 1), "judge_with_variants": round(variants_s, 1)},
        "caught": caught,
        "work_dir": str(work),
    }


def _judge(tasks, sampled, path: Path, verify: VerifyConfig, description: str) -> tuple[list[list[Candidate]], float]:
    start = time.monotonic()
    judged = judge_completions(tasks, sampled, path, verify=verify, description=description)
    return judged, time.monotonic() - start


def _given_samples(path: Path, tasks) -> list[list[Candidate]]:
    """Rows of a samples file for the loaded tasks, in their order; each must have an answer."""
    try:
        rows = {row["id"]: row for row in read_jsonl(path)}
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: not a samples file (JSONL rows with id and completions): {e}") from None
    missing = [t.id for t in tasks if t.id not in rows or not rows[t.id].get("completions")]
    if missing:
        raise UserError(f"{path}: no answer for {len(missing)} problems, e.g. {missing[0]}")
    return [sampled_candidates({"id": t.id, "completions": rows[t.id]["completions"][:1]}) for t in tasks]


def summary_table(result: dict) -> Table:
    s, n = result["settings"], result["settings"]["problems"]
    table = Table(title=f"Correct answers without and with {s['variants']} database variants ({s['tasks']}, {n} problems, {s['answers']})")
    for column in ("judged on", "correct", "accuracy"):
        table.add_column(column, justify="left" if column == "judged on" else "right")
    for label, count in _rows(result):
        table.add_row(label, str(count), f"{count / n:.1%}" if n else "-")
    return table


def _rows(result: dict) -> list[tuple[str, int]]:
    k = result["settings"]["variants"]
    return [
        ("the database alone", result["correct_on_the_database"]),
        (f"the database and all {k} variants", result["correct_on_all_variants"]),
        ("difference (right by coincidence)", result["difference"]),
    ]


def markdown(result: dict) -> str:
    s, n = result["settings"], result["settings"]["problems"]
    lines = [
        f"# Database variants: {s['tasks']}, {n} problems, K={s['variants']}",
        "",
        provenance_markdown(result),
        f"Model: {s['model']}; answers: {s['answers']} (max {s['max_new_tokens']} new tokens); scoring rule: {s['match']}; "
        f"variant seed {s['variant_seed']}. Seconds: {result['seconds']}.",
        "",
        "| judged on | correct | accuracy |",
        "|---|---:|---:|",
        *(f"| {label} | {count} | {count / n:.1%} |" if n else f"| {label} | {count} | - |" for label, count in _rows(result)),
        "",
    ]
    if result["caught"]:
        lines += ["Answers correct on the database but not on a variant:", "", "| id | answer | detail |", "|---|---|---|"]
        lines += [f"| {c['id']} | `{_cell(c['sql'])}` | {_cell(c['detail'])} |" for c in result["caught"]]
    return "\n".join(lines) + "\n"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.strip("/.")).strip("_")[-60:] or "x"


if __name__ == "__main__":
    sys.exit(main())
