"""One iteration's training, several ways, on the same pairs: what does each objective do to held-out accuracy?

The cheapest experiment that isolates the objective: take an iteration of a finished run (its policy, the
iteration before's model, and the pairs that policy's samples gave), train that policy on exactly those
pairs once per arm (an arm is a set of `--set` overrides of the run's own config), evaluate every trained
policy on the same held-out problems (greedy), and compare each arm with the first, paired per problem and
training seed, with a 95% bootstrap interval. Per arm it also keeps what the DPO term did, from the
trainer's log: the chosen and rejected answers' summed log-prob at the first and last logged step, and the
reward margin.

Usage: python benchmarks/fixed_pairs.py RUN_DIR --iteration 2 --arm control: --arm sft:train.loss=sft
           [--arm anchor:train.anchor=50,train.beta=0.1 ...] [--seeds 0,1] [--eval-limit 180] [--tag T]
Arms train into RUN_DIR/fixed-pairs-<iteration>/<arm>-seed<s> (re-running resumes); results go to
benchmarks/results/fixed-pairs-<TAG>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from paired import paired_difference
from record import RESULTS, provenance, provenance_markdown, training_ends, write_results

from codelutra.artifacts import read_jsonl
from codelutra.candidates import Pair, read_pairs
from codelutra.config import load_config
from codelutra.console import console
from codelutra.layout import IterationFiles, RunLayout
from codelutra.loop.evaluate import evaluate_model
from codelutra.models import resolve_model
from codelutra.tasks.sources import load_tasks
from codelutra.training.trainer import train_policy


def main() -> int:
    args = _parser().parse_args()
    run = RunLayout(Path(args.run_dir).resolve())
    k = args.iteration
    if not run.config.exists() or not run.iteration(k).pairs.exists():
        print(f"fixed_pairs: error: {run.iteration(k).pairs}: no such file (a run folder whose iteration {k} has pairs)", file=sys.stderr)
        return 2
    base_cfg = load_config(run.config)
    policy = resolve_model(base_cfg.model.name) if k == 1 else str(run.iteration(k - 1).model)
    pairs = read_pairs(run.iteration(k).pairs)
    eval_source = base_cfg.eval_tasks.model_copy(update={"limit": args.eval_limit})
    eval_tasks, _ = load_tasks(eval_source, base_cfg.verify)
    info = provenance()
    untrained = evaluate(policy, run.root / f"fixed-pairs-{k}" / "policy", base_cfg, eval_tasks)
    arms = {}
    for name, overrides in args.arm:
        cfg = load_config(run.config, overrides)
        arms[name] = {"overrides": overrides, "seeds": {}}
        for seed in args.seeds:
            out = run.root / f"fixed-pairs-{k}" / f"{name}-seed{seed}"
            arms[name]["seeds"][seed] = train_and_evaluate(policy, pairs, out, cfg, seed, eval_tasks)
            console.print(f"{name} seed {seed}: {arms[name]['seeds'][seed]['accuracy']:.1%}")
    control = next(iter(arms))
    # the policy before this iteration, greedy, so the same verdicts for every training seed
    before = {(seed, pid): v == "correct" for seed in args.seeds for pid, v in untrained["verdicts"].items()}
    for name, arm in arms.items():
        arm["mean"] = sum(s["accuracy"] for s in arm["seeds"].values()) / len(arm["seeds"])
        if name != control:
            arm[f"minus_{control}"] = paired_difference(_verdicts(arm), _verdicts(arms[control]))
        arm["minus_policy"] = paired_difference(_verdicts(arm), before)
    result = {
        **info,
        "run": str(run.root),
        "iteration": k,
        "policy": policy,
        "policy_accuracy": untrained["accuracy"],
        "pairs": _pair_mix(pairs),
        "held_out": len(eval_tasks),
        "seeds": args.seeds,
        "arms": arms,
    }
    for path in write_results(Path(args.results), f"fixed-pairs-{args.tag}", result, markdown(result, control)):
        console.print(f"wrote {path}")
    return 0


def train_and_evaluate(policy, pairs, out: Path, cfg, seed: int, eval_tasks) -> dict:
    """Train `policy` on `pairs` under `cfg.train` and evaluate it (both resume); the trainer's log summary beside."""
    files = IterationFiles(out)
    if not files.trained:
        train_policy(policy, pairs, out, cfg.train, seed=seed)
    return {**evaluate(str(files.model), out, cfg, eval_tasks), "trainer": training_ends(files.train_log)}


def evaluate(model: str, out: Path, cfg, eval_tasks) -> dict:
    """Greedy accuracy, verdict counts and each problem's verdict (resumes in `out`)."""
    files = IterationFiles(out)
    settings = dict(prompt=cfg.prompt, eval_cfg=cfg.eval, verify=cfg.verify, generation=cfg.generation)
    result = evaluate_model(model, eval_tasks, files.dir, label=out.name, **settings)
    verdicts = {row["id"]: row["verdicts"][0] for row in read_jsonl(files.eval.verdicts)}
    return {"accuracy": result["accuracy"], "counts": result["counts"], "verdicts": verdicts}


def _verdicts(arm: dict) -> dict:
    return {(seed, pid): v == "correct" for seed, row in arm["seeds"].items() for pid, v in row["verdicts"].items()}


def _pair_mix(pairs: list[Pair]) -> dict:
    kinds = dict(Counter(p.rejected.verdict for p in pairs))
    return {"n": len(pairs), "gold_chosen": sum(p.chosen_source == "gold" for p in pairs), "rejected_kinds": kinds}


def markdown(result: dict, control: str) -> str:
    mix = result["pairs"]
    lines = [
        f"# Fixed pairs: iteration {result['iteration']} of `{result['run']}`, trained several ways",
        "",
        provenance_markdown(result),
        f"Pairs: {mix['n']} ({mix['gold_chosen']} with gold as the chosen side); rejected kinds: {mix['rejected_kinds']}.  ",
        f"Held-out: {result['held_out']} problems (greedy), training seeds {', '.join(map(str, result['seeds']))}. "
        f"Paired difference against `{control}`: per problem and seed, mean and 95% bootstrap interval "
        "(problems resampled within seeds).",
        "",
        f"The policy before the iteration (`{result['policy']}`) scores {result['policy_accuracy']:.1%} on them.",
        "",
        "| arm | overrides | accuracy (mean) | per seed | minus control [95% CI] | minus the policy [95% CI] "
        "| chosen reward, last step | rejected reward, last step |",
        "|---|---|---:|---|---|---|---|---|",
    ]
    for name, arm in result["arms"].items():
        diff_cell, gain_cell = (_interval(arm.get(key)) for key in (f"minus_{control}", "minus_policy"))
        trainer = next(iter(arm["seeds"].values()))["trainer"]
        chosen, rejected = (f"{trainer[key][-1]:+.2f}" if key in trainer else "" for key in ("rewards/chosen", "rewards/rejected"))
        per_seed = ", ".join(f"{s['accuracy']:.1%}" for s in arm["seeds"].values())
        overrides = " ".join(arm["overrides"]) or "-"
        lines.append(f"| {name} | `{overrides}` | {arm['mean']:.1%} | {per_seed} | {diff_cell} | {gain_cell} | {chosen} | {rejected} |")
    return "\n".join(lines) + "\n"


def _interval(diff: dict | None) -> str:
    return f"{diff['mean']:+.1%} [{diff['ci95'][0]:+.1%}, {diff['ci95'][1]:+.1%}]" if diff else ""


def _arm(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"--arm {text}: expected NAME:key=value,key=value")
    return name, [item for item in overrides.split(",") if item]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run folder (runs/<name>) whose iteration ITERATION has pairs")
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--arm", type=_arm, action="append", required=True, help="NAME:key=value,... (the first is the control)")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    p.add_argument("--eval-limit", type=int, default=None, help="held-out problems (default: all of the run's eval task set)")
    p.add_argument("--tag", default="study")
    p.add_argument("--results", default=str(RESULTS))
    return p


if __name__ == "__main__":
    sys.exit(main())
