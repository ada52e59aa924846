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
from pathlib import Path

from paired import paired_difference
from record import RESULTS, provenance, provenance_markdown, write_results

from codelutra.artifacts import read_json, read_jsonl, write_json
from codelutra.config import load_config
from codelutra.console import console
from codelutra.loop.evaluate import evaluate_model
from codelutra.loop.layout import IterationFiles, RunLayout
from codelutra.models import resolve_model
from codelutra.tasks.sources import load_tasks
from codelutra.training.trainer import train_policy


def main() -> int:
    args = _parser().parse_args()
    run = RunLayout(Path(args.run_dir).resolve())
    base_cfg = load_config(run.config)
    k = args.iteration
    policy = resolve_model(base_cfg.model.name) if k == 1 else str(run.iteration(k - 1).model)
    pairs = read_jsonl(run.iteration(k).pairs)
    eval_source = base_cfg.eval_tasks.model_copy(update={"limit": args.eval_limit})
    eval_tasks, _ = load_tasks(eval_source, base_cfg.verify)
    info = provenance()
    arms = {}
    for name, overrides in args.arm:
        cfg = load_config(run.config, overrides)
        arms[name] = {"overrides": overrides, "seeds": {}}
        for seed in args.seeds:
            out = run.root / f"fixed-pairs-{k}" / f"{name}-seed{seed}"
            arms[name]["seeds"][seed] = train_and_evaluate(policy, pairs, out, cfg, seed, eval_tasks)
            console.print(f"{name} seed {seed}: {arms[name]['seeds'][seed]['accuracy']:.1%}")
    control = next(iter(arms))
    for name, arm in arms.items():
        arm["mean"] = sum(s["accuracy"] for s in arm["seeds"].values()) / len(arm["seeds"])
        if name != control:
            arm[f"minus_{control}"] = paired_difference(_verdicts(arm), _verdicts(arms[control]))
    result = {
        **info,
        "run": str(run.root),
        "iteration": k,
        "policy": policy,
        "pairs": _pair_mix(pairs),
        "held_out": len(eval_tasks),
        "seeds": args.seeds,
        "arms": arms,
    }
    for path in write_results(Path(args.results), f"fixed-pairs-{args.tag}", result, markdown(result, control)):
        console.print(f"wrote {path}")
    return 0


def train_and_evaluate(policy, pairs, out: Path, cfg, seed: int, eval_tasks) -> dict:
    """Train `policy` on `pairs` under `cfg.train` (resuming), evaluate it; the trainer's log summary beside."""
    summary = out / "summary.json"
    if summary.exists():
        return read_json(summary)
    files = IterationFiles(out)
    if not files.trained:
        train_policy(policy, pairs, out, cfg.train, seed=seed)
    log = [row for row in read_jsonl(files.train_log) if "logps/chosen" in row]
    result = evaluate_model(
        str(files.model),
        eval_tasks,
        files.dir,
        prompt=cfg.prompt,
        eval_cfg=cfg.eval,
        verify=cfg.verify,
        label=out.name,
        generation=cfg.generation,
    )
    verdicts = {row["id"]: row["verdicts"][0] for row in read_jsonl(files.eval.verdicts)}
    row = {"accuracy": result["accuracy"], "counts": result["counts"], "verdicts": verdicts, "trainer": _trainer_summary(log)}
    write_json(summary, row)
    return row


def _trainer_summary(log: list[dict]) -> dict:
    """Chosen and rejected summed log-probs and the reward margin, at the first and last logged step."""
    if not log:
        return {}
    keys = ("logps/chosen", "logps/rejected", "rewards/margins", "rewards/chosen", "loss")
    return {key: [round(log[0].get(key, float("nan")), 3), round(log[-1].get(key, float("nan")), 3)] for key in keys}


def _verdicts(arm: dict) -> dict:
    return {(seed, pid): v == "correct" for seed, row in arm["seeds"].items() for pid, v in row["verdicts"].items()}


def _pair_mix(pairs: list[dict]) -> dict:
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p["rejected_kind"]] = kinds.get(p["rejected_kind"], 0) + 1
    return {"n": len(pairs), "gold_chosen": sum(p["chosen_source"] == "gold" for p in pairs), "rejected_kinds": kinds}


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
        "| arm | overrides | accuracy (mean) | per seed | minus control [95% CI] | chosen logp first -> last "
        "| rejected logp first -> last |",
        "|---|---|---:|---|---|---|---|",
    ]
    for name, arm in result["arms"].items():
        diff = arm.get(f"minus_{control}")
        diff_cell = f"{diff['mean']:+.1%} [{diff['ci95'][0]:+.1%}, {diff['ci95'][1]:+.1%}]" if diff else ""
        trainer = next(iter(arm["seeds"].values()))["trainer"]
        chosen = " -> ".join(map(str, trainer.get("logps/chosen", [])))
        rejected = " -> ".join(map(str, trainer.get("logps/rejected", [])))
        per_seed = ", ".join(f"{s['accuracy']:.1%}" for s in arm["seeds"].values())
        overrides = " ".join(arm["overrides"]) or "-"
        lines.append(f"| {name} | `{overrides}` | {arm['mean']:.1%} | {per_seed} | {diff_cell} | {chosen} | {rejected} |")
    return "\n".join(lines) + "\n"


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
