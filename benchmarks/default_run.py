"""A default run before and after a change: wall time and peak memory of `codelutra run` at two commits.

Each commit is checked out into a scratch folder (`git worktree`), and `python -m codelutra.cli run`
runs there with that checkout first on PYTHONPATH, into a run folder of its own. Measured per run:
wall seconds, the peak resident memory of the run's whole process tree (sandbox workers included,
polled), the held-out accuracy after each iteration, and the per-stage seconds where the commit
records them. With `--parallel` both runs go at once, each with half the cores, so that whatever
else loads the machine loads both alike; otherwise one after the other.

Usage: python benchmarks/default_run.py --before REV [--after REV] [--parallel] [--scratch DIR] [--set key=value ...]
(REV: a commit, or a folder holding a checkout, e.g. made with `git archive` for a machine without the repository)
Results: benchmarks/results/default-run[-TAG].{json,md}
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from record import (
    REPO,
    RESULTS,
    PeakTreeMemory,
    provenance,
    provenance_markdown,
    write_results,
)
from rich.table import Table

from codelutra.artifacts import read_json
from codelutra.console import console, tables
from codelutra.layout import RunLayout


def main() -> int:
    args = _parser().parse_args()
    info = provenance()
    scratch = Path(args.scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    labels = {"before": args.before, "after": args.after}
    # a directory is taken as it is (a checkout made elsewhere); a revision is checked out here
    trees = {label: Path(rev).resolve() if Path(rev).is_dir() else _checkout(rev, scratch / label) for label, rev in labels.items()}
    threads = max(1, (os.cpu_count() or 2) // 2) if args.parallel else None
    results: dict[str, dict] = {}
    runners = [
        threading.Thread(target=lambda lb=label: results.__setitem__(lb, run_default(trees[lb], scratch / f"runs-{lb}", args.set, threads)))
        for label in labels
    ]
    for runner in runners:
        runner.start()
        if not args.parallel:
            runner.join()
    for runner in runners:
        runner.join()
    # a folder given as it is keeps its name: git would answer for whatever repository holds it
    revisions = {label: _commit(tree) if tree.is_relative_to(scratch) else labels[label] for label, tree in trees.items()}
    for tree in trees.values():  # the run folders and logs stay; the checkouts made here go
        if tree.is_relative_to(scratch):
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    result = {"benchmark": "default_run", **info, "parallel": args.parallel, "revisions": revisions, "runs": results}
    stem = "default-run" + (f"-{args.tag}" if args.tag else "")
    for path in write_results(Path(args.results), stem, result, markdown(result)):
        console.print(f"wrote {path}")
    tables.print(summary_table(result))
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit before the change")
    parser.add_argument("--after", default="HEAD", help="the commit after it (default: HEAD)")
    parser.add_argument("--parallel", action="store_true", help="run both at once, each with half the cores")
    parser.add_argument("--scratch", default="/tmp/codelutra-default-run", help="checkouts and run folders (default: %(default)s)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. the machine")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for both runs")
    return parser


def _checkout(rev: str, path: Path) -> Path:
    """A clean checkout of `rev` at `path` (a detached git worktree, replaced if it exists)."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev], check=True, capture_output=True)
    return path


def _commit(tree: Path) -> str:
    """The checkout's commit ("" for a folder outside git)."""
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def run_default(tree: Path, output: Path, sets: list[str], threads: int | None) -> dict:
    """`codelutra run` from `tree` into a fresh `output`; its wall time, peak tree memory and results."""
    shutil.rmtree(output, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "codelutra.cli", "run", "--set", f"output_dir={output}", "--set", "name=default"]
    command += [arg for s in sets for arg in ("--set", s)]
    log = output.with_suffix(".log")
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
        with PeakTreeMemory(process.pid, interval_s=0.2) as memory:
            process.wait()
        peak = memory.peak_bytes
    seconds = time.monotonic() - start
    iterations = []
    for it in RunLayout.of(output, "default").iterations():
        if not it.eval.result.exists():
            break
        timings = read_json(it.timings) if it.timings.exists() else None
        iterations.append({"iteration": it.k, "accuracy": read_json(it.eval.result)["accuracy"], "stage_seconds": timings})
    return {
        "command": command,
        "exit_code": process.returncode,
        "log": str(log),
        "wall_seconds": round(seconds, 1),
        "peak_rss_tree_mb": round(peak / 2**20),
        "iterations": iterations,
    }


def _rows(result: dict):
    for label, run in result["runs"].items():
        accuracy = " -> ".join(f"{it['accuracy']:.0%}" for it in run["iterations"])
        yield label, result["revisions"][label][:10], f"{run['wall_seconds']:.0f}", f"{run['peak_rss_tree_mb'] / 1024:.1f}", accuracy, str(run["exit_code"])


HEADER = ("run", "commit", "wall s", "peak GB", "held-out accuracy", "exit")


def summary_table(result: dict) -> Table:
    table = Table(title="default run, before and after" + (" (side by side)" if result["parallel"] else ""))
    for name in HEADER:
        table.add_column(name)
    for row in _rows(result):
        table.add_row(*row)
    return table


def markdown(result: dict) -> str:
    runs = result["runs"]
    ratio = runs["after"]["wall_seconds"] / runs["before"]["wall_seconds"]
    memory = runs["after"]["peak_rss_tree_mb"] / max(1, runs["before"]["peak_rss_tree_mb"])
    lines = [
        "# A default run, before and after",
        "",
        provenance_markdown(result),
        f"Both runs {'side by side, each with half the cores' if result['parallel'] else 'one after the other'}. "
        f"After / before: wall time {ratio:.2f}x, peak memory {memory:.2f}x.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(row) + " |" for row in _rows(result)),
        "",
    ]
    for label, run in runs.items():
        stages = [it["stage_seconds"] for it in run["iterations"] if it["stage_seconds"]]
        if stages:
            lines.append(f"{label}: seconds per stage, iteration by iteration: {stages}  ")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
