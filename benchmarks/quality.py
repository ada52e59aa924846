"""Does the dual loss help? CodeLutra (DPO + lambda*SFT) against SFT alone and DPO alone, iteration by iteration.

The paper's ablation: each arm runs the project's own loop (`Refiner`) on the same training
problems with the same sampling budget (`sampling.n` per problem), the same number of training
steps per iteration (`train.max_steps`) and the same number of iterations, and is evaluated on the
same held-out problems after every iteration. Only `train.loss` differs:

* codelutra: DPO + lambda*SFT on correct-vs-incorrect pairs (the gold code where no sample is correct);
* sft: the SFT term alone, on the same correct sides;
* dpo: the DPO term alone, on the same pairs.

The base model is evaluated once and iteration 1 is sampled once: the sft and dpo arms start from
copies of the codelutra arm's iter_0 evaluation and iter_1 samples, verdicts and pairs (the Refiner
skips a stage whose artifact exists), so iteration 1 trains all three arms on exactly the same
pairs. Later iterations sample from each arm's own policy, as CodeLutra does.

Task sets: `builtin` (builtin:train / builtin:heldout) and `spider` (configs/spider.yaml's split:
held-out databases that no training problem uses; ../shared/data/spider). Runs go to
OUTPUT/runs/quality-<tasks>-<arm>; re-running the same command resumes them. Results go to
benchmarks/results/quality-<tasks>[-quick].{json,md,png}.

Usage: python benchmarks/quality.py [--tasks builtin|spider|all] [--quick] [--iterations K]
       [--model M] [--output DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from pathlib import Path

from record import REPO, RESULTS, provenance, provenance_markdown, write_results
from rich.table import Table

from codelutra.artifacts import read_json, read_jsonl
from codelutra.config import RunConfig, dump_config, load_config
from codelutra.console import console, tables
from codelutra.errors import UserError
from codelutra.execution.verdict import VERDICT_KINDS
from codelutra.loop.refine import Refiner

ARMS = ("codelutra", "sft", "dpo")
SPIDER = Path(os.environ.get("CODELUTRA_SHARED_DATA", REPO.parent / "shared" / "data")) / "spider"

# Per task set: the config file it starts from, and the sizes of the full and the quick mode.
# Full: sized so that both task sets, 3 arms x 3 iterations, finish in about 2.5 hours on 2 CPU cores
# (the committed results); 2 samples per problem, so pass@2. On a GPU raise them with --set, e.g.
# --set train_tasks.limit=240 --set eval_tasks.limit=100 --set sampling.n=4 --set train.max_steps=60.
# Quick: a smoke run; the three arms on builtin finish in under 10 minutes on 2 CPU cores (spider's longer
# prompts make its steps about 3 times slower).
TASK_SETS = {
    "builtin": {
        "config": None,  # the defaults (builtin:train / builtin:heldout), fewer problems
        "full": ["train_tasks.limit=64", "eval_tasks.limit=50", "sampling.n=2", "train.max_steps=8"],
        "quick": ["train_tasks.limit=8", "eval_tasks.limit=10", "sampling.n=2", "train.batch_size=2", "train.max_steps=2"],
    },
    "spider": {
        "config": REPO / "configs" / "spider.yaml",  # held-out problems on 20 databases no training problem uses
        "paths": [f"train_tasks.path={SPIDER}", f"eval_tasks.path={SPIDER}"],
        "full": ["train_tasks.limit=24", "eval_tasks.limit=30", "sampling.n=2", "train.max_steps=4"],
        "quick": ["train_tasks.limit=6", "eval_tasks.limit=6", "sampling.n=2", "train.batch_size=2", "train.max_steps=2"],
    },
}
# Shared by iteration 1 of every arm: the base model's evaluation, and the first samples and their pairs.
SHARED_ARTIFACTS = (
    "iter_0/eval.json", "iter_0/eval_samples.jsonl", "iter_0/eval_verdicts.jsonl",
    "iter_1/samples.jsonl", "iter_1/verdicts.jsonl", "iter_1/pairs.jsonl",
)  # fmt: skip
def main() -> int:
    args = _parser().parse_args()
    info = provenance()
    results_dir = Path(args.results)
    tasks = args.tasks or ("builtin" if args.quick else "all")
    names = list(TASK_SETS) if tasks == "all" else [tasks]
    finished = []
    try:
        for name in names:
            if name == "spider" and not SPIDER.exists():
                console.print(f"[yellow]spider skipped:[/] no data at {SPIDER} (set CODELUTRA_SHARED_DATA to the folder holding spider/)")
                continue
            finished.append(run_task_set(name, args, info, results_dir))
    except UserError as e:
        print(f"quality: error: {e}", file=sys.stderr)
        return 2
    for result in finished:  # the tables come last, after every run's progress output
        tables.print(summary_table(result))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", choices=[*TASK_SETS, "all"], help="task sets to run (default: all; quick: builtin)")
    parser.add_argument("--quick", action="store_true", help="small problem counts and steps: minutes on a CPU")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per arm (default 3; quick: 2)")
    parser.add_argument("--model", default=None, help="model for every arm (default: the embedded default)")
    parser.add_argument("--output", default=str(REPO / "benchmarks"), help="folder that runs/ goes into (default: benchmarks/)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every arm")
    return parser


def arm_config(task_set: str, arm: str, args) -> RunConfig:
    """The RunConfig of one arm: the task set's config and sizes, then --set, then what defines the arm."""
    spec = TASK_SETS[task_set]
    iterations = args.iterations or (2 if args.quick else 3)
    overrides = [
        *spec.get("paths", []),
        *spec["quick" if args.quick else "full"],
        *([f"model.name={args.model}"] if args.model else []),
        *args.set,
        f"output_dir={args.output}",
        f"name=quality-{task_set}-{arm}" + ("-quick" if args.quick else ""),
        f"train.loss={arm}",
        f"max_iterations={iterations}",
        "min_gain=-1",  # never stop early: every arm runs every iteration
    ]
    return load_config(spec["config"], overrides)


def run_task_set(task_set: str, args, info: dict, results_dir: Path) -> dict:
    """Run (or resume) the three arms on one task set; write and return its results."""
    start = time.monotonic()
    histories, run_dirs = {}, {}
    for arm in ARMS:
        refiner = Refiner(arm_config(task_set, arm, args))
        if arm != ARMS[0]:
            _copy_shared(run_dirs[ARMS[0]], refiner.run_dir)
        console.rule(f"quality benchmark: {task_set}, arm {arm}")
        histories[arm] = refiner.run()
        run_dirs[arm] = refiner.run_dir
    cfg = arm_config(task_set, ARMS[0], args)
    result = {
        "benchmark": "quality",
        "tasks": task_set,
        "quick": args.quick,
        **info,
        "settings": _settings(cfg, run_dirs[ARMS[0]]),
        "base": _base(histories[ARMS[0]][0], run_dirs[ARMS[0]], cfg.sampling.n),
        "arms": {arm: [_iteration(row, run_dirs[arm]) for row in histories[arm][1:]] for arm in ARMS},
        "run_dirs": {arm: str(path) for arm, path in run_dirs.items()},
        "wall_seconds_this_invocation": round(time.monotonic() - start, 1),
    }
    stem = f"quality-{task_set}" + ("-quick" if args.quick else "")
    plot_curves(result, results_dir / f"{stem}.png")
    for path in write_results(results_dir, stem, result, markdown(result, f"{stem}.png")):
        console.print(f"wrote {path}")
    return result


def _copy_shared(source: Path, target: Path) -> None:
    """Give an arm the base evaluation and iteration 1's samples of the first arm (where it has none yet)."""
    for rel in SHARED_ARTIFACTS:
        if (source / rel).exists() and not (target / rel).exists():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, target / rel)


def _settings(cfg: RunConfig, run_dir: Path) -> dict:
    return {
        "iterations": cfg.max_iterations,
        "train_steps_per_iteration": cfg.train.max_steps,
        "samples_per_problem": cfg.sampling.n,
        "train_problems": len(read_jsonl(run_dir / "iter_1" / "samples.jsonl")),
        "eval_problems": read_json(run_dir / "iter_0" / "eval.json")["n"],
        "config": dump_config(cfg),
    }


def _base(row: dict, run_dir: Path, n: int) -> dict:
    """The base model: greedy pass@1 on the held-out problems, pass@1 and pass@n of iteration 1's samples."""
    verdicts = read_jsonl(run_dir / "iter_1" / "verdicts.jsonl")
    correct = [sum(v == "correct" for v in r["verdicts"]) for r in verdicts]
    return {
        "heldout_pass@1_greedy": row["accuracy"],
        "n": row["n"],
        "counts": row["counts"],
        "eval_seconds": row["seconds"],
        "train_problems": len(verdicts),
        "samples_per_problem": n,
        "train_pass@1_sampled": _mean(pass_at_k(n, c, 1) for c in correct),
        f"train_pass@{n}_sampled": _mean(pass_at_k(n, c, n) for c in correct),
    }


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _iteration(row: dict, run_dir: Path) -> dict:
    it_dir = run_dir / f"iter_{row['iteration']}"
    pairs = read_jsonl(it_dir / "pairs.jsonl")
    times = read_json(it_dir / "timings.json")  # the Refiner's seconds per stage
    return {
        "iteration": row["iteration"],
        "accuracy": row["accuracy"],
        "n": row["n"],
        "counts": row["counts"],
        "pairs": len(pairs),
        "pairs_gold_chosen": sum(p["chosen_source"] == "gold" for p in pairs),
        "train_seconds": times["train"],
        # sample + verify + pair + train, then evaluate; iteration 1 of sft/dpo reuses the first arm's samples
        "stage_seconds": times,
        "wall_seconds": round(sum(times.values()), 1),
    }


def _rows(result: dict):
    """(arm, iteration, accuracy, counts, pairs, train s, wall s) per table row, base model first."""
    base = result["base"]
    yield "base model", 0, base["heldout_pass@1_greedy"], base["counts"], "", "", base["eval_seconds"]
    for arm, history in result["arms"].items():
        for r in history:
            yield arm, r["iteration"], r["accuracy"], r["counts"], r["pairs"], r["train_seconds"], r["wall_seconds"]


def summary_table(result: dict) -> Table:
    base, n = result["base"], result["base"]["samples_per_problem"]
    table = Table(
        title=f"Quality: {result['tasks']} ({'quick' if result['quick'] else 'full'}), held-out execution accuracy",
        caption=f"base model on the training problems, {n} samples each: pass@1 {base['train_pass@1_sampled']:.1%}, "
        f"pass@{n} {base[f'train_pass@{n}_sampled']:.1%}",
    )
    for name in ("arm", "iter", "accuracy", "verdicts", "pairs", "train s", "wall s"):
        table.add_column(name, justify="left" if name in ("arm", "verdicts") else "right")
    for arm, k, accuracy, counts, pairs, train_s, wall_s in _rows(result):
        verdicts = ", ".join(f"{kind} {counts[kind]}" for kind in VERDICT_KINDS if counts.get(kind))
        table.add_row(arm, str(k), f"{accuracy:.1%}", verdicts, str(pairs), str(train_s), str(wall_s))
    return table


def markdown(result: dict, png: str) -> str:
    s, base, n = result["settings"], result["base"], result["base"]["samples_per_problem"]
    lines = [
        f"# Quality benchmark: {result['tasks']} ({'quick' if result['quick'] else 'full'})",
        "",
        provenance_markdown(result),
        f"Training problems: {s['train_problems']}, samples per problem: {s['samples_per_problem']}, "
        f"training steps per iteration: {s['train_steps_per_iteration']}, iterations: {s['iterations']}; "
        f"held-out problems: {s['eval_problems']} (greedy decoding, execution accuracy).",
        "",
        f"Base model: held-out pass@1 (greedy) {base['heldout_pass@1_greedy']:.1%}; on the training problems, "
        f"sampled: pass@1 {base['train_pass@1_sampled']:.1%}, pass@{n} {base[f'train_pass@{n}_sampled']:.1%} "
        "(unbiased estimator over iteration 1's samples).",
        "",
        "| arm | iteration | accuracy | " + " | ".join(VERDICT_KINDS) + " | pairs | train s | wall s |",
        "|---|---:|---:|" + "---:|" * len(VERDICT_KINDS) + "---:|---:|---:|",
    ]
    for arm, k, accuracy, counts, pairs, train_s, wall_s in _rows(result):
        cells = [arm, str(k), f"{accuracy:.1%}", *(str(counts.get(kind, 0)) for kind in VERDICT_KINDS), str(pairs), str(train_s), str(wall_s)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Wall s: sampling, verifying, pairing, training and evaluating that iteration (summed over resumptions); "
        "iteration 1 of the sft and dpo arms reuses the codelutra arm's samples, so it has no sampling time.",
        "",
        f"![accuracy per iteration]({png})",
        "",
        "Configuration of the codelutra arm (the others differ only in `train.loss`):",
        "",
        "```yaml",
        s["config"].rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def plot_curves(result: dict, path: Path) -> None:
    """The three arms' held-out accuracy per iteration, all starting from the base model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    base = 100 * result["base"]["heldout_pass@1_greedy"]
    for arm, history in result["arms"].items():
        ax.plot([0] + [r["iteration"] for r in history], [base] + [100 * r["accuracy"] for r in history], marker="o", label=arm)
    ax.set_xlabel("iteration (0 = base model)")
    ax.set_ylabel("held-out execution accuracy (%)")
    ax.set_title(f"CodeLutra vs SFT only vs DPO only: {result['tasks']}" + (" (quick)" if result["quick"] else ""))
    ax.set_xticks(range(0, result["settings"]["iterations"] + 1))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
