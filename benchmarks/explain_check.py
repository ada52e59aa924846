"""Does every answer of an eval folder parse and name only its database's tables and columns? SQLite's EXPLAIN says.

EXPLAIN compiles a query without running it: a syntax error, a table or column the database lacks, or an
ambiguous column name fails there, whatever rows the query would return. This is the check of issue 26's
"every answer produced under the constraint parses and names only schema identifiers": run it on the folder
of `codelutra eval --constrain schema` (and on the unconstrained one beside it for contrast). Answers cut at
the token budget are counted apart (the grammar could not finish them). A column the engine does not find
is split into a real column of another table (out of the query's scope) and a name no table has (invented).

Usage: python benchmarks/explain_check.py EVAL_DIR [--tasks builtin:heldout-large | --config configs/spider.yaml]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from record import SPIDER_PATHS, add_results_arguments, provenance, provenance_markdown, publish

from codelutra.artifacts import read_jsonl
from codelutra.config import TaskSource, load_config
from codelutra.errors import UserError
from codelutra.execution.engines import engine_of
from codelutra.layout import EvalFiles
from codelutra.tasks.catalog import read_only_sqlite, sqlite_tables
from codelutra.tasks.sources import load_tasks

# What SQLite's compiler says, first match wins; "other" is anything else.
KINDS = (
    ("syntax_error", re.compile(r"syntax error|incomplete input|unrecognized token")),
    ("no_such_table", re.compile(r"no such table")),
    ("no_such_column", re.compile(r"no such column: (?P<name>\S+)")),
    ("ambiguous_column", re.compile(r"ambiguous column name")),
)


def explain(db_path: str, sql: str) -> str:
    """'' where SQLite compiles `sql` on the database (opened read-only), else its error message."""
    with read_only_sqlite(db_path) as db:
        try:
            db.execute(f"EXPLAIN {sql}")
        except Exception as error:  # sqlite3.Error, or a Warning for more than one statement
            return str(error) or type(error).__name__
    return ""


def kind_of(message: str, columns: set[str]) -> str:
    """The error's kind; an unknown column is 'column_out_of_scope' where some table of the database has it."""
    if not message:
        return "compiles"
    for kind, pattern in KINDS:
        if match := pattern.search(message):
            if kind == "no_such_column":
                return "column_out_of_scope" if match["name"].split(".")[-1].lower() in columns else "column_invented"
            return kind
    return "other"


def check_folder(folder: Path, tasks: dict) -> dict:
    """The kind of every answer of `folder` (its eval_verdicts.jsonl and eval_samples.jsonl) with examples."""
    files = EvalFiles(folder)
    verdicts = read_jsonl(files.verdicts)
    truncated = {row["id"]: row["truncated"][0] for row in read_jsonl(files.samples)}
    columns_of: dict[str, set[str]] = {}
    counts: Counter = Counter()
    examples: dict[str, list] = {}
    for row in verdicts:
        task = tasks.get(row["id"])
        if task is None:
            raise UserError(f"{files.verdicts}: problem {row['id']!r} is not in the task set given")
        if truncated.get(row["id"]):
            kind, message = "truncated", ""
        else:
            if task.db_path not in columns_of:
                columns_of[task.db_path] = {c.lower() for table in sqlite_tables(task.db_path) for c, _ in table.columns}
            message = explain(task.db_path, row["sql"][0])
            kind = kind_of(message, columns_of[task.db_path])
        counts[kind] += 1
        if kind != "compiles" and len(examples.setdefault(kind, [])) < 3:
            examples[kind].append({"id": row["id"], "sql": row["sql"][0], "error": message})
    return {"folder": str(folder), "answers": len(verdicts), "kinds": dict(counts), "examples": examples}


ORDER = ("compiles", "truncated", "syntax_error", "no_such_table", "column_invented", "column_out_of_scope", "ambiguous_column", "other")


def markdown(result: dict) -> str:
    lines = ["# Do the answers compile? SQLite's EXPLAIN on every answer", "", provenance_markdown(result), ""]
    lines += ["| folder | answers | " + " | ".join(ORDER) + " |", "|---|---:|" + "---:|" * len(ORDER)]
    for row in result["folders"]:
        lines.append(f"| {row['folder']} | {row['answers']} | " + " | ".join(str(row["kinds"].get(k, 0)) for k in ORDER) + " |")
    lines += ["", "Examples (at most 3 of each kind):", ""]
    for row in result["folders"]:
        for kind, shown in row["examples"].items():
            for example in shown:
                lines.append(f"- {Path(row['folder']).name}, {kind}, {example['id']}: `{example['sql']}` {example['error']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    args = _parser().parse_args()
    try:
        source = load_config(args.config, SPIDER_PATHS).eval_tasks if args.config else TaskSource(path=args.tasks)
        tasks, _ = load_tasks(source)
        by_id = {task.id: task for task in tasks}
        if any(task.kind != "sql" or engine_of(task.db_path) != "sqlite" for task in tasks):
            raise UserError("the task set is not SQLite SQL (EXPLAIN here is SQLite's)")
        folders = [check_folder(Path(folder), by_id) for folder in args.eval_dirs]
    except (UserError, FileNotFoundError) as e:
        print(f"explain_check: error: {e}", file=sys.stderr)
        return 2
    result = {"benchmark": "explain_check", **provenance(), "folders": folders}
    publish(args, "explain-check", result, markdown(result))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dirs", nargs="+", metavar="EVAL_DIR", help="`codelutra eval` folders on the same task set")
    parser.add_argument("--tasks", default="builtin:heldout-large", help="the task set the folders were evaluated on")
    parser.add_argument("--config", default=None, help="take the task set from this config's eval_tasks (e.g. configs/spider.yaml)")
    add_results_arguments(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main())
