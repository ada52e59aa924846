"""Does iteration pay, and does the dual loss help? CodeLutra (DPO + lambda*SFT) against SFT alone and DPO
alone, iteration by iteration, over several seeds.

The paper's ablation: each arm runs the project's own loop (`Refiner`) on the same training
problems with the same sampling budget (`sampling.n` per problem), the same number of training
steps per iteration (`train.max_steps`) and the same number of iterations, and is evaluated on the
same held-out problems after every iteration. Only `train.loss` differs:

* codelutra: DPO + lambda*SFT on correct-vs-incorrect pairs (the model's own correct answer where it
  has one, the gold code where it has none);
* sft: the SFT term alone, on the same correct sides;
* dpo: the DPO term alone, on the same pairs.

Every seed (`--seeds`) repeats the three arms (or those `--arms` names: a knob study may run codelutra
alone) with its own `seed` (which problems each iteration draws, the samples, the training order).
The base model is evaluated once (greedy, the same for every seed), and each seed's iteration 1 is
sampled once: its sft and dpo arms start from copies of
its codelutra arm's iter_1 samples, verdicts and pairs (the Refiner skips a stage whose artifact
exists), so iteration 1 trains the three arms on exactly the same pairs. Later iterations sample
from each arm's own policy, as CodeLutra does. Per iteration the results keep each seed's held-out
accuracy (`accuracies`), their mean and spread, and how often the policy that sampled that
iteration's training problems found a correct answer by itself (pass@1 and pass@n, unbiased).

Task sets: `builtin` (builtin:train / builtin:heldout) and `spider` (configs/spider.yaml's split:
held-out databases that no training problem uses; ../shared/data/spider). Runs go to
OUTPUT/runs/quality-<tasks>-<arm>-seed<s>; re-running the same command resumes them, so seeds can
run side by side (`--seeds 0` and `--seeds 1` in two processes, then `--seeds 0,1` to write the
results of both). Results go to benchmarks/results/quality-<tasks>[-quick][-TAG].{json,md,png}.

Usage: python benchmarks/quality.py [--tasks builtin|spider|all] [--quick] [--iterations K] [--seeds 0,1] [--arms codelutra,sft,dpo]
       [--model M] [--output DIR] [--tag T] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from paired import paired_difference
from record import REPO, RESULTS, SPIDER, SPIDER_PATHS, provenance, provenance_markdown, training_ends, write_results
from rich.table import Table

from codelutra.artifacts import read_json, read_jsonl
from codelutra.config import RunConfig, dump_config, load_config
from codelutra.console import console, tables
from codelutra.errors import UserError
from codelutra.layout import RunLayout
from codelutra.loop.refine import Refiner

ARMS = ("codelutra", "sft", "dpo")

# Per task set: the config file it starts from, and the sizes of the full and the quick mode.
# Full builtin: every iteration draws 64 fresh problems of the 480 (so 3 iterations see 192 distinct ones),
# 4 samples each, up to 2 pairs per problem, 20 steps of 4 pairs; all 180 held-out problems. Two seeds of the
# three arms take about an hour on 2 CPU cores, the seeds side by side. On a GPU raise them with --set.
# Quick: a smoke run; the three arms on builtin finish in under 10 minutes on 2 CPU cores (spider's longer
# prompts make its steps about 3 times slower).
TASK_SETS = {
    "builtin": {
        "config": None,  # the defaults (builtin:train / builtin:heldout)
        "full": [
            "train_tasks.limit=480",
            "train_tasks.per_iteration=64",
            "eval_tasks.limit=180",
            "sampling.n=4",
            "pairs.max_per_problem=2",
            "train.max_steps=20",
        ],
        "quick": [
            "train_tasks.limit=8",
            "eval_tasks.limit=10",
            "sampling.n=2",
            "train.batch_size=2",
            "train.max_steps=2",
        ],
    },
    "spider": {
        "config": REPO / "configs" / "spider.yaml",  # held-out problems on 20 databases no training problem uses
        "paths": SPIDER_PATHS,
        "full": [
            "train_tasks.limit=24",
            "eval_tasks.limit=30",
            "sampling.n=2",
            "train.max_steps=4",
        ],
        "quick": [
            "train_tasks.limit=6",
            "eval_tasks.limit=6",
            "sampling.n=2",
            "train.batch_size=2",
            "train.max_steps=2",
        ],
    },
}


def base_artifacts(run: RunLayout) -> list[Path]:
    """The base model's greedy evaluation: the same for every arm and seed."""
    base = run.iteration(0).eval
    return [base.inputs, base.result, base.samples, base.verdicts]


def first_iteration_artifacts(run: RunLayout) -> list[Path]:
    """Iteration 1's samples and pairs: the same for the three arms of one seed."""
    first = run.iteration(1)
    return [first.samples, first.verdicts, first.pairs]


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
                console.print(
                    f"[yellow]spider skipped:[/] no data at {SPIDER} (set CODELUTRA_SHARED_DATA to the folder holding spider/)"
                )
                continue
            finished.append(run_task_set(name, args, info, results_dir))
    except UserError as e:
        print(f"quality: error: {e}", file=sys.stderr)
        return 2
    for result in finished:  # the tables come last, after every run's progress output
        tables.print(summary_table(result))
    return 0


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,1; got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is given twice in {text!r}")
    return seeds


def _arms(text: str) -> tuple[str, ...]:
    arms = tuple(text.split(","))
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown or len(set(arms)) != len(arms):
        raise argparse.ArgumentTypeError(f"expected distinct arms of {','.join(ARMS)}; got {text!r}")
    return arms


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", choices=[*TASK_SETS, "all"], help="task sets to run (default: all; quick: builtin)")
    parser.add_argument("--quick", action="store_true", help="small problem counts and steps: minutes on a CPU")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per arm (default 3; quick: 2)")
    parser.add_argument("--seeds", type=_seeds, default=None, help="seeds, comma-separated (default 0,1; quick: 0)")
    arms_help = f"arms to run, comma-separated (default: {','.join(ARMS)}; a knob study may run codelutra alone)"
    parser.add_argument("--arms", type=_arms, default=ARMS, help=arms_help)
    parser.add_argument("--model", default=None, help="model for every arm (default: the embedded default)")
    parser.add_argument("--output", default=str(REPO / "benchmarks"), help="folder that runs/ goes into (default: benchmarks/)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    parser.add_argument("--tag", help="suffix of the result files and run names, e.g. a recipe: quality-builtin-TAG.md")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every arm")
    return parser


def arm_config(task_set: str, arm: str, seed: int, args) -> RunConfig:
    """The RunConfig of one arm and seed: the task set's config and sizes, then --set, then what defines the arm."""
    spec = TASK_SETS[task_set]
    iterations = args.iterations or (2 if args.quick else 3)
    suffix = ("-quick" if args.quick else "") + (f"-{args.tag}" if args.tag else "")
    overrides = [
        *spec.get("paths", []),
        *spec["quick" if args.quick else "full"],
        *([f"model.name={args.model}"] if args.model else []),
        *args.set,
        f"output_dir={args.output}",
        f"name=quality-{task_set}-{arm}-seed{seed}{suffix}",
        f"seed={seed}",
        f"train.loss={arm}",
        f"max_iterations={iterations}",
        "min_gain=-1",  # never stop early: every arm runs every iteration
    ]
    return load_config(spec["config"], overrides)


def run_task_set(task_set: str, args, info: dict, results_dir: Path) -> dict:
    """Run (or resume) the three arms of every seed on one task set; write and return its results."""
    start = time.monotonic()
    seeds = args.seeds or ([0] if args.quick else [0, 1])
    per_seed, first_run = {}, None
    for seed in seeds:
        histories, runs = {}, {}
        for arm in args.arms:
            refiner = Refiner(arm_config(task_set, arm, seed, args))
            if first_run is not None:
                _copy(base_artifacts(first_run), base_artifacts(refiner.layout))
            if runs:
                _copy(
                    first_iteration_artifacts(runs[args.arms[0]]),
                    first_iteration_artifacts(refiner.layout),
                )
            console.rule(f"quality benchmark: {task_set}, seed {seed}, arm {arm}")
            histories[arm] = refiner.run()
            runs[arm] = refiner.layout
            first_run = first_run or refiner.layout
        per_seed[seed] = {arm: [_iteration(row, runs[arm]) for row in histories[arm][1:]] for arm in args.arms}
        per_seed[seed]["run_dirs"] = {arm: str(run.root) for arm, run in runs.items()}
    cfg = arm_config(task_set, args.arms[0], seeds[0], args)
    result = {
        "benchmark": "quality",
        "tasks": task_set,
        "quick": args.quick,
        **info,
        "settings": _settings(cfg, first_run, seeds),
        "base": _base(read_json(first_run.iteration(0).eval.result), cfg.sampling.n),
        "arms": {arm: _across_seeds([per_seed[seed][arm] for seed in seeds]) for arm in args.arms},
        "paired": {f"codelutra_minus_{b}": paired(per_seed, "codelutra", b) for b in ("sft", "dpo") if b in args.arms[1:]},
        "per_seed": {str(seed): per_seed[seed] for seed in seeds},
        "wall_seconds_this_invocation": round(time.monotonic() - start, 1),
    }
    stem = f"quality-{task_set}" + ("-quick" if args.quick else "") + (f"-{args.tag}" if args.tag else "")
    plot_curves(result, results_dir / f"{stem}.png")
    for path in write_results(results_dir, stem, result, markdown(result, f"{stem}.png")):
        console.print(f"wrote {path}")
    return result


def _copy(sources: list[Path], targets: list[Path]) -> None:
    """Give a run the artifacts another run already has (where it has none of its own yet)."""
    for have, want in zip(sources, targets):
        if have.exists() and not want.exists():
            want.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(have, want)


def _settings(cfg: RunConfig, run: RunLayout, seeds: list[int]) -> dict:
    return {
        "seeds": seeds,
        "iterations": cfg.max_iterations,
        "train_steps_per_iteration": cfg.train.max_steps,
        "samples_per_problem": cfg.sampling.n,
        "train_problems_per_iteration": len(read_jsonl(run.iteration(1).samples)),
        "train_pool": cfg.train_tasks.limit,
        "eval_problems": read_json(run.iteration(0).eval.result)["n"],
        "config": dump_config(cfg),
    }


def _base(row: dict, n: int) -> dict:
    """The base model's greedy pass@1 on the held-out problems (its sampled pass@k is iteration 1's)."""
    return {
        "heldout_pass@1_greedy": row["accuracy"],
        "n": row["n"],
        "counts": row["counts"],
        "eval_seconds": row["seconds"],
        "samples_per_problem": n,
    }


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _iteration(row: dict, run: RunLayout) -> dict:
    """One arm's iteration k of one seed: its held-out result, and what its training samples found."""
    it = run.iteration(row["iteration"])
    pairs = read_jsonl(it.pairs)
    verdicts = read_jsonl(it.verdicts)  # sampled by the policy before this iteration, on this iteration's problems
    n = len(verdicts[0]["verdicts"]) if verdicts else 0
    correct = [sum(v == "correct" for v in r["verdicts"]) for r in verdicts]
    times = read_json(it.timings)  # the Refiner's seconds per stage
    return {
        "iteration": row["iteration"],
        "accuracy": row["accuracy"],
        "n": row["n"],
        "counts": row["counts"],
        "train_pass@1": _mean(pass_at_k(n, c, 1) for c in correct),
        "train_pass@n": _mean(pass_at_k(n, c, n) for c in correct),
        "pairs": len(pairs),
        "pairs_gold_chosen": sum(p["chosen_source"] == "gold" for p in pairs),
        "rejected_kinds": dict(Counter(p["rejected_kind"] for p in pairs)),
        "dpo_term": training_ends(it.train_log),
        "verdicts": {r["id"]: r["verdicts"][0] for r in read_jsonl(it.eval.verdicts)},
        "train_seconds": times["train"],
        # sample + verify + pair + train, then evaluate; iteration 1 of sft/dpo reuses the first arm's samples
        "stage_seconds": times,
        "wall_seconds": round(sum(times.values()), 1),
    }


def paired(per_seed: dict, a: str, b: str) -> list[dict]:
    """Per iteration, arm a minus arm b over every (seed, held-out problem): mean and 95% bootstrap interval."""
    rows = []
    for k, _ in enumerate(next(iter(per_seed.values()))[a]):
        verdicts = {
            arm: {(seed, pid): v == "correct" for seed, runs in per_seed.items() for pid, v in runs[arm][k]["verdicts"].items()}
            for arm in (a, b)
        }
        diff = paired_difference(verdicts[a], verdicts[b])
        only = {f"only_{a}": diff["only_a"], f"only_{b}": diff["only_b"]}
        rows.append({"iteration": k + 1, "mean": diff["mean"], "ci95": diff["ci95"], "n": diff["n"], **only})
    return rows


def _across_seeds(histories: list[list[dict]]) -> list[dict]:
    """Per iteration: each seed's value of every measure (a list, in seed order), and the accuracy's mean and spread."""
    rows = []
    for per_seed in zip(*histories, strict=True):
        accuracies = [r["accuracy"] for r in per_seed]
        row = {
            "iteration": per_seed[0]["iteration"],
            "n": per_seed[0]["n"],
            "accuracies": accuracies,
        }
        row |= {
            "mean": _mean(accuracies),
            "min": min(accuracies),
            "max": max(accuracies),
        }
        row["stdev"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        for key in (
            "train_pass@1",
            "train_pass@n",
            "pairs",
            "pairs_gold_chosen",
            "rejected_kinds",
            "dpo_term",
            "train_seconds",
            "wall_seconds",
        ):
            row[key] = [r[key] for r in per_seed]
        rows.append(row)
    return rows


def _rows(result: dict):
    """(arm, iteration, mean, min, max, per-seed accuracies, train pass@1, pass@n, pairs, gold-chosen, wall s)."""
    base = result["base"]
    acc = base["heldout_pass@1_greedy"]
    yield ("base model", 0, acc, acc, acc, [acc], None, None, None, None, base["eval_seconds"])
    for arm, history in result["arms"].items():
        for r in history:
            yield (
                arm, r["iteration"], r["mean"], r["min"], r["max"], r["accuracies"], _mean(r["train_pass@1"]),
                _mean(r["train_pass@n"]), _mean(r["pairs"]), _mean(r["pairs_gold_chosen"]), _mean(r["wall_seconds"]),
            )  # fmt: skip


def _cells(row) -> list[str]:
    arm, k, mean, low, high, accuracies, pass1, passn, pairs, gold, wall = row
    return [
        arm, str(k), f"{mean:.1%}", f"{low:.1%} - {high:.1%}", ", ".join(f"{a:.1%}" for a in accuracies),
        _optional(pass1, ".1%"), _optional(passn, ".1%"), _optional(pairs, ".0f"), _optional(gold, ".0f"), f"{wall:.0f}",
    ]  # fmt: skip


def _optional(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


HEADERS = ("arm", "iter", "mean", "min - max", "per seed", "train pass@1", "train pass@n", "pairs", "gold chosen", "wall s")


def summary_table(result: dict) -> Table:
    s = result["settings"]
    table = Table(
        title=f"Quality: {result['tasks']} ({'quick' if result['quick'] else 'full'}), held-out execution accuracy "
        f"({s['eval_problems']} problems, seeds {', '.join(map(str, s['seeds']))})",
        caption="train pass@1 / pass@n: the policy that sampled the iteration's training problems, n samples each",
    )
    for name in HEADERS:
        table.add_column(name, justify="left" if name in ("arm", "per seed") else "right")
    for row in _rows(result):
        table.add_row(*_cells(row))
    return table


def markdown(result: dict, png: str) -> str:
    s = result["settings"]
    lines = [
        f"# Quality benchmark: {result['tasks']} ({'quick' if result['quick'] else 'full'})",
        "",
        provenance_markdown(result),
        (
            f"Seeds: {', '.join(map(str, s['seeds']))}. Per iteration: {s['train_problems_per_iteration']} training problems "
            f"(drawn from a pool of {s['train_pool']}), {s['samples_per_problem']} samples each, "
            f"{s['train_steps_per_iteration']} training steps; {s['iterations']} iterations; held-out problems: "
            f"{s['eval_problems']} (greedy decoding, execution accuracy), the same for every arm and seed."
        ),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in _rows(result):
        lines.append("| " + " | ".join(_cells(row)) + " |")
    lines += [
        "",
        (
            "Mean and min - max over the seeds; pairs, gold chosen (pairs whose correct side is the gold code, not the "
            "model's own answer) and wall s are means over the seeds. Train pass@1 / pass@n: how often the policy that "
            "sampled the iteration's training problems was right by itself (unbiased estimator over its samples). "
            "Wall s: sampling, verifying, pairing, training and evaluating that iteration (summed over resumptions); "
            "iteration 1 of the sft and dpo arms reuses the codelutra arm's samples, so it has no sampling time."
        ),
        "",
        *paired_markdown(result),
        f"![accuracy per iteration]({png})",
        "",
        f"Configuration of the codelutra arm, seed {s['seeds'][0]} (the others differ only in `train.loss`, `seed` and `name`):",
        "",
        "```yaml",
        s["config"].rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def paired_markdown(result: dict) -> list[str]:
    """The paired differences (the comparison that decides) and, per iteration, the pairs' rejected kinds and the DPO term."""
    lines = []
    for name, rows in result.get("paired", {}).items():
        lines += [
            f"Paired, {name.replace('_minus_', ' - ')} (per held-out problem and seed; 95% bootstrap interval, "
            "problems resampled within seeds; an interval holding 0 is a tie):",
            "",
            "| iteration | mean | 95% interval | verdicts paired |",
            "|---:|---:|---|---:|",
        ]
        lines += [f"| {r['iteration']} | {r['mean']:+.1%} | [{r['ci95'][0]:+.1%}, {r['ci95'][1]:+.1%}] | {r['n']} |" for r in rows]
        lines.append("")
    lines += [
        "| arm | iter | rejected kinds (seed mean) | chosen logp first -> last | rejected logp first -> last |",
        "|---|---:|---|---|---|",
    ]
    for arm, history in result["arms"].items():
        for r in history:
            kinds = Counter()
            for mix in r["rejected_kinds"]:
                kinds.update(mix)
            term = r["dpo_term"][0] or {}
            logps = [" -> ".join(f"{v:.2f}" for v in term.get(key, [])) for key in ("logps/chosen", "logps/rejected")]
            mix = ", ".join(f"{kind} {count / len(r['rejected_kinds']):.0f}" for kind, count in kinds.most_common())
            lines.append(f"| {arm} | {r['iteration']} | {mix} | {logps[0]} | {logps[1]} |")
    return [*lines, ""]


def plot_curves(result: dict, path: Path) -> None:
    """The three arms' mean held-out accuracy per iteration, the band between the seeds' lowest and highest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    base = 100 * result["base"]["heldout_pass@1_greedy"]
    for arm, history in result["arms"].items():
        steps = [0] + [r["iteration"] for r in history]
        line = ax.plot(steps, [base] + [100 * r["mean"] for r in history], marker="o", label=arm)[0]
        low, high = (
            [base] + [100 * r["min"] for r in history],
            [base] + [100 * r["max"] for r in history],
        )
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
    s = result["settings"]
    ax.set_xlabel("iteration (0 = base model)")
    ax.set_ylabel(f"held-out execution accuracy (%), {s['eval_problems']} problems")
    seeds = f"mean of {len(s['seeds'])} seeds, band: min - max" if len(s["seeds"]) > 1 else f"seed {s['seeds'][0]}"
    ax.set_title(f"CodeLutra vs SFT only vs DPO only: {result['tasks']}" + (" (quick)" if result["quick"] else "") + f"\n{seeds}")
    ax.set_xticks(range(s["iterations"] + 1))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
