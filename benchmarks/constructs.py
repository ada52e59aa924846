"""Which SQL constructs does each eval folder get right, and how often do its answers use them?

A preference term that pushes a near miss down at the token where it leaves the right answer lowers
that construct (HAVING where ORDER BY ... LIMIT was right, DISTINCT, BETWEEN) in every similar prompt,
including held-out questions that need it. This shows it: per construct, the held-out problems whose gold
query uses it, how many of those each folder got right, and how many of each folder's answers use it at
all (a construct a model has learnt to avoid is used far less often than the golds use it).

Usage: python benchmarks/constructs.py EVAL_DIR [EVAL_DIR ...] [--tasks builtin:heldout-large] [--tag T]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from record import add_results_arguments, provenance, provenance_markdown, publish

from codelutra.artifacts import read_jsonl
from codelutra.config import TaskSource
from codelutra.errors import UserError
from codelutra.layout import EvalFiles
from codelutra.tasks.sources import load_tasks

CONSTRUCTS = {
    "JOIN": r"\bJOIN\b",
    "GROUP BY": r"\bGROUP\s+BY\b",
    "HAVING": r"\bHAVING\b",
    "ORDER BY": r"\bORDER\s+BY\b",
    "LIMIT": r"\bLIMIT\b",
    "DISTINCT": r"\bDISTINCT\b",
    "subquery": r"\(\s*SELECT\b",
    "set operation": r"\b(UNION|INTERSECT|EXCEPT)\b",
    "BETWEEN": r"\bBETWEEN\b",
    "LIKE": r"\bLIKE\b",
    "aggregate": r"\b(COUNT|SUM|AVG|MIN|MAX)\s*\(",
}


def uses(sql: str) -> set[str]:
    """The constructs a query uses (keywords matched case-insensitively, string literals included: they rarely hold one)."""
    return {name for name, pattern in CONSTRUCTS.items() if re.search(pattern, sql, re.IGNORECASE)}


def tally(folder: Path, golds: dict[str, str]) -> dict:
    """Per construct: problems whose gold uses it, of those the ones this folder got right, its answers using it."""
    rows = read_jsonl(EvalFiles(folder).verdicts)
    counts = {name: {"gold_uses": 0, "right": 0, "answers_use": 0} for name in CONSTRUCTS}
    for row in rows:
        if row["id"] not in golds:
            raise UserError(f"{EvalFiles(folder).verdicts}: problem {row['id']!r} is not in the task set given")
        right = row["verdicts"][0] == "correct"
        for name in uses(golds[row["id"]]):
            counts[name]["gold_uses"] += 1
            counts[name]["right"] += right
        for name in uses(row["sql"][0]):
            counts[name]["answers_use"] += 1
    return {"folder": str(folder), "problems": len(rows), "accuracy": sum(r["verdicts"][0] == "correct" for r in rows) / len(rows), "constructs": counts}


def markdown(result: dict) -> str:
    folders = result["folders"]
    names = [f"{chr(ord('A') + i)}" for i in range(len(folders))]
    lines = ["# SQL constructs: right answers and use, per eval folder", "", provenance_markdown(result), ""]
    lines += [f"- {name}: `{f['folder']}` ({f['accuracy']:.1%} of {f['problems']})" for name, f in zip(names, folders)]
    lines += ["", "| construct | golds using it | " + " | ".join(f"{n} right" for n in names) + " | " + " | ".join(f"{n} answers using it" for n in names) + " |"]
    lines.append("|---|---:|" + "---:|" * (2 * len(folders)))
    for construct in CONSTRUCTS:
        cells = [str(f["constructs"][construct]["right"]) for f in folders] + [str(f["constructs"][construct]["answers_use"]) for f in folders]
        lines.append(f"| {construct} | {folders[0]['constructs'][construct]['gold_uses']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    args = _parser().parse_args()
    try:
        tasks, _ = load_tasks(TaskSource(path=args.tasks))
        golds = {task.id: task.gold for task in tasks if task.kind == "sql"}
        folders = [tally(Path(folder), golds) for folder in args.eval_dirs]
    except (UserError, FileNotFoundError) as e:
        print(f"constructs: error: {e}", file=sys.stderr)
        return 2
    result = {"benchmark": "constructs", **provenance(), "tasks": args.tasks, "folders": folders}
    publish(args, "constructs", result, markdown(result))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dirs", nargs="+", metavar="EVAL_DIR", help="eval folders (a run's iter_K, `codelutra eval`'s output) on one task set")
    parser.add_argument("--tasks", default="builtin:heldout-large", help="the task set they were evaluated on")
    add_results_arguments(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main())
