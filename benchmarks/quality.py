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
results of both). Results go to benchmarks/results/quality-<tasks>[-quick|-decide][-TAG].{json,md,png}.

A knob arm (`--arm own:train.preference_on=own`) is the codelutra arm with those overrides, run beside the others
under its own name and paired against sft (`paired.own_minus_sft`); with `--arms sft` the sft runs already made are
reused, so a mechanism costs only its own arm.

Sizes: --quick is a smoke run; the default (full) the old 64-problem protocol; --decide the one that can tell
codelutra from sft (issue 25): per iteration 240 fresh problems of the pool of 480, 4 samples each, one pair per
problem, 60 steps of 4 pairs (one pass over iteration 1's pairs, the same steps for every arm after); the 360
problems of builtin:heldout-large; 3 iterations, seeds 0,1,2, arms codelutra and sft.

Usage: python benchmarks/quality.py [--tasks builtin|spider|all] [--quick|--decide] [--iterations K] [--seeds 0,1] [--arms codelutra,sft,dpo]
       [--arm NAME:key=value,...]
       [--model M] [--output DIR] [--tag T] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from paired import paired_difference
from quality_report import markdown, plot_curves, summary_table
from record import REPO, RESULTS, SPIDER, SPIDER_PATHS, provenance, training_ends, write_results

from codelutra.artifacts import read_json, read_jsonl
from codelutra.config import RunConfig, dump_config, load_config
from codelutra.console import console, tables
from codelutra.errors import UserError
from codelutra.layout import RunLayout
from codelutra.loop.refine import Refiner

ARMS = ("codelutra", "sft", "dpo")

# Per task set: the config file it starts from, and its sizes (full, quick, and for builtin decide).
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
        "decide": [
            "train_tasks.limit=480",
            "train_tasks.per_iteration=240",
            "eval_tasks.path=builtin:heldout-large",
            "eval_tasks.limit=360",
            "sampling.n=4",
            "pairs.max_per_problem=1",
            "train.max_steps=60",
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
    tasks = args.tasks or ("all" if args.size == "full" else "builtin")
    names = list(TASK_SETS) if tasks == "all" else [tasks]
    finished = []
    try:
        args.arms = _resolved_arms(args)
        for name in names:
            if args.size not in TASK_SETS[name]:
                raise UserError(
                    f"{name} has no --{args.size} size; it has {', '.join(k for k in TASK_SETS[name] if k != 'config')}"
                )
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
    if len(set(arms)) != len(arms) or not all(re.fullmatch(r"[a-z0-9_]+", arm) for arm in arms):
        raise argparse.ArgumentTypeError(f"expected distinct arm names (a-z, 0-9, _), e.g. codelutra,sft; got {text!r}")
    return arms


def _knob_arm(text: str) -> tuple[str, list[str]]:
    """NAME:key=value,...: the codelutra arm with these overrides, run beside the others under NAME."""
    name, _, overrides = text.partition(":")
    if not re.fullmatch(r"[a-z0-9_]+", name) or name in ARMS or not all("=" in o for o in overrides.split(",")):
        raise argparse.ArgumentTypeError(f"expected NAME:key=value,... with a new name (a-z, 0-9, _); got {text!r}")
    return name, overrides.split(",")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", choices=[*TASK_SETS, "all"], help="task sets to run (default: all; quick: builtin)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick", help="a smoke run: minutes on a CPU")
    size.add_argument("--decide", dest="size", action="store_const", const="decide", help="the protocol that decides (builtin)")
    parser.set_defaults(size="full")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per arm (default 3; quick: 2)")
    parser.add_argument("--seeds", type=_seeds, default=None, help="seeds, comma-separated (default 0,1; quick: 0; decide: 0,1,2)")
    arms_help = f"arms to run, comma-separated (default: {','.join(ARMS)}; decide: codelutra,sft)"
    parser.add_argument("--arms", type=_arms, default=None, help=arms_help)
    parser.add_argument("--arm", type=_knob_arm, action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="a further arm: codelutra with these overrides, paired against sft (e.g. own:train.preference_on=own)")
    parser.add_argument("--model", default=None, help="model for every arm (default: the embedded default)")
    parser.add_argument("--output", default=str(REPO / "benchmarks"), help="folder that runs/ goes into (default: benchmarks/)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    parser.add_argument("--tag", help="suffix of the result files and run names, e.g. a recipe: quality-builtin-TAG.md")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every arm")
    return parser


def arm_config(task_set: str, arm: str, seed: int, args) -> RunConfig:
    """The RunConfig of one arm and seed: the task set's config and sizes, then --set, then what defines the arm."""
    spec = TASK_SETS[task_set]
    iterations = args.iterations or (2 if args.size == "quick" else 3)
    suffix = _suffix(args)
    overrides = [
        *spec.get("paths", []),
        *spec[args.size],
        *([f"model.name={args.model}"] if args.model else []),
        *args.set,
        f"output_dir={args.output}",
        f"name=quality-{task_set}-{arm}-seed{seed}{suffix}",
        f"seed={seed}",
        *([f"train.loss={arm}"] if arm in ARMS else dict(args.arm)[arm]),
        f"max_iterations={iterations}",
        "min_gain=-1",  # never stop early: every arm runs every iteration
    ]
    return load_config(spec["config"], overrides)


def run_task_set(task_set: str, args, info: dict, results_dir: Path) -> dict:
    """Run (or resume) the three arms of every seed on one task set; write and return its results."""
    start = time.monotonic()
    seeds = args.seeds or {"quick": [0], "full": [0, 1], "decide": [0, 1, 2]}[args.size]
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
        "quick": args.size == "quick",
        "size": args.size,
        **info,
        "settings": _settings(cfg, first_run, seeds),
        "base": _base(read_json(first_run.iteration(0).eval.result), cfg.sampling.n),
        "arms": {arm: _across_seeds([per_seed[seed][arm] for seed in seeds]) for arm in args.arms},
        "paired": {f"{a}_minus_{b}": paired(per_seed, a, b) for a, b in _comparisons(args.arms)},
        "per_seed": {str(seed): per_seed[seed] for seed in seeds},
        "wall_seconds_this_invocation": round(time.monotonic() - start, 1),
    }
    stem = f"quality-{task_set}{_suffix(args)}"
    plot_curves(result, results_dir / f"{stem}.png")
    for path in write_results(results_dir, stem, result, markdown(result, f"{stem}.png")):
        console.print(f"wrote {path}")
    return result


def _resolved_arms(args) -> tuple[str, ...]:
    """The arms to run: --arms (or the size's default), then the --arm ones; each a built-in arm or an --arm."""
    arms = (*(args.arms or (ARMS[:2] if args.size == "decide" else ARMS)), *(name for name, _ in args.arm))
    unknown = [arm for arm in arms if arm not in ARMS and arm not in dict(args.arm)]
    if unknown:
        raise UserError(f"--arms: {unknown[0]!r} is none of {', '.join(ARMS)} and no --arm defines it")
    return arms


def _comparisons(arms: tuple[str, ...]) -> list[tuple[str, str]]:
    """The paired comparisons: every other arm against sft, and codelutra against dpo."""
    against_sft = [(arm, "sft") for arm in arms if arm != "sft" and arm != "dpo" and "sft" in arms]
    return against_sft + ([("codelutra", "dpo")] if {"codelutra", "dpo"} <= set(arms) else [])


def _suffix(args) -> str:
    return ("" if args.size == "full" else f"-{args.size}") + (f"-{args.tag}" if args.tag else "")


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


if __name__ == "__main__":
    sys.exit(main())
