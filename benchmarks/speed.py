"""Where an iteration's time and memory go, and how the project's choices compare with plain ones.

Measured side by side in one run, each stage in a fresh child process so that its time and peak
memory are its own:

* sampling: generated tokens per second at several batch sizes (`generate`, the project's sampler, as the
  sampling stage runs it);
* shared-prefix sampling: the sampler's tokens/s against plain `model.generate` on the same prompts,
  n = 1 and n = 8, and against plain `generate` with the linear layers run by oneDNN as the sampler's (so the
  two gains, token sharing and the kernel, stand apart); each row with its achieved GFLOP/s beside a
  plain matmul's, and the plain row with its prefill alone timed (the same batches, one new token): the
  ratio that a path computing no prompt token at all, but decoding as `generate` does, would reach;
* verification: candidates judged per second by the project's sandbox (`verify_sql`: a pool of
  worker processes, read-only databases kept open, time limits, each distinct query run once)
  against a serial loop with the same safety (one sandbox per candidate, one after the other), and
  beside the floor that no sandbox at all gives (sqlite3 in the benchmark's own process);
* training: preference pairs per second of the project's training stage (`train_policy` with the
  task set's TrainConfig: prefix-tree packing; and with packing off) against TRL's DPOTrainer with TRL's
  and PEFT's defaults, on the same pairs, each with its achieved GFLOP/s beside a plain matmul's;
* schema-constrained sampling (`generation.constrain: schema`): the sampler's tokens/s with each database's
  grammar against without it, on the same prompts, n = 1 and n = 8 (grammars built inside the timed span);
* the whole iteration (the project's `Refiner`, one iteration) at three sizes, problems x samples.

The problems (--tasks) are builtin:train's, or the Spider training databases' of configs/spider.yaml
(../shared/data/spider), taken database after database as the loop's batches hold them (the loop sorts a
call's prompts, so a batch is one database's problems), with that task set's prompt, token budget and
training length. The candidates are the base model's samples on them, or a run's samples.jsonl (--samples). Peak memory: the stage process's own peak resident set (getrusage, exact), and the
peak of the process together with its workers (sandbox processes), sampled every 50 ms with psutil.
Scratch runs go to OUTPUT/runs/speed-* and are redone from scratch each time. Results go to
benchmarks/results/speed[-quick][-spider][-TAG].{json,md}; --stages measures only some stages (verification and training
need samples: --samples, or the sampling stage runs too). The stages are speed_sampling.py, speed_verification.py and
speed_training.py; the problems and their configuration, speed_tasks.py.

Usage: python benchmarks/speed.py [--quick] [--tasks builtin|spider] [--model M] [--output DIR] [--samples FILE] [--stages S,...] [--tag T]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from record import REPO, RESULTS, SPIDER, provenance, provenance_markdown, write_results
from rich.table import Table
from speed_sampling import (
    SHARED_SAMPLING_SIZES,
    measure_constrained_sampling,
    measure_sampling,
    measure_shared_sampling,
    shared_sampling_ratio_line,
)
from speed_tasks import TASK_SETS, tasks_of
from speed_training import measure_iterations, measure_training, pairs_of
from speed_verification import measure_verification
from stage import measure

from codelutra.artifacts import read_jsonl
from codelutra.console import console, tables
from codelutra.models import EMBEDDED_DEFAULT, resolve_model

# Quick: a few minutes on 2 CPU cores with SmolLM2-135M. Batch sizes count sequences (prompts x samples).
SIZES = {
    "full": {"problems": 64, "samples_per_problem": 4, "batch_sizes": [4, 16, 64], "iteration_sizes": ["30x1", "60x2", "120x4"], "eval_problems": 20},
    "quick": {"problems": 16, "samples_per_problem": 4, "batch_sizes": [4, 16, 64], "iteration_sizes": ["4x1", "8x2", "16x2"], "eval_problems": 4},
}
RATIOS = {
    "sampling": "tokens/s relative to the smallest batch size",
    "verification": "candidates/s relative to the serial loop with a sandbox per candidate",
    "training": "pairs/s relative to TRL's DPOTrainer with its defaults",
    "iteration": "seconds relative to the smallest size (how cost grows)",
    "shared_sampling": "tokens/s relative to plain generate on the same prompts and samples",
    "constrained_sampling": "tokens/s relative to unconstrained sampling on the same prompts (generation.constrain)",
}


def main() -> int:
    args = _parser().parse_args()
    chosen = {"problems": args.problems, "batch_sizes": args.batch_sizes, "iteration_sizes": args.iteration_sizes, "eval_problems": args.eval_problems}
    sizes = {**SIZES["quick" if args.quick else "full"], **{key: value for key, value in chosen.items() if value}, "tasks": args.tasks}
    if args.tasks == "spider" and not SPIDER.exists():
        print(f"speed: error: no Spider data at {SPIDER} (set CODELUTRA_SHARED_DATA to the folder holding spider/)", file=sys.stderr)
        return 2
    model = measure(resolve_model, args.model or EMBEDDED_DEFAULT)["value"]  # converting the embedded default loads torch
    scratch = Path(args.output).resolve() / "runs"

    stages = args.stages or list(RATIOS)
    sections = {}
    if "sampling" in stages or ({"verification", "training"} & set(stages) and not args.samples):
        sections["sampling"], samples = measure_sampling(model, sizes)
    shared_sizes = {**SHARED_SAMPLING_SIZES["quick" if args.quick else "full"], **({"problems": args.problems} if args.problems else {})}
    if "shared_sampling" in stages:
        sections["shared_sampling"] = measure_shared_sampling(model, args.tasks, shared_sizes)
    if "constrained_sampling" in stages:
        sections["constrained_sampling"] = measure_constrained_sampling(model, args.tasks, shared_sizes)
    if args.samples:
        samples = read_jsonl(args.samples)[: sizes["problems"]]
    if {"verification", "training"} & set(stages):
        tasks = tasks_of(args.tasks, samples)
        verification, verdicts = measure_verification(tasks, samples)  # training needs the verdicts
        if "verification" in stages:
            sections["verification"] = verification
        if "training" in stages:
            sections["training"] = measure_training(model, args.tasks, pairs_of(args.tasks, tasks, samples, verdicts), scratch)
    if "iteration" in stages:
        sections["iteration"] = measure_iterations(model, args.tasks, sizes, scratch)
    # Last: provenance imports torch (to name the GPU), which this process must not hold while it measures.
    result = {"benchmark": "speed", "quick": args.quick, **provenance(), "sizes": sizes, "model": model, "sections": sections}

    stem = "speed" + ("-quick" if args.quick else "") + ("-spider" if args.tasks == "spider" else "") + (f"-{args.tag}" if args.tag else "")
    for path in write_results(Path(args.results), stem, result, markdown(result)):
        console.print(f"wrote {path}")
    tables.print(summary_table(result))
    if "training" in sections:  # the packed trainer (the last row) over TRL's DPOTrainer at its defaults
        print(f"ratio training_vs_trl {sections['training'][-1]['ratio']:.3g}x")
    if "shared_sampling" in sections:
        print(shared_sampling_ratio_line(sections["shared_sampling"]))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: minutes on a CPU; ends with the line 'ratio training_vs_trl <r>x'")
    parser.add_argument("--tasks", choices=list(TASK_SETS), default="builtin", help="whose prompts: builtin:train's or Spider's (default: builtin)")
    parser.add_argument("--model", default=None, help="model to measure (default: the embedded default)")
    parser.add_argument("--output", default=str(REPO / "benchmarks"), help="folder that runs/ (scratch runs) goes into")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    parser.add_argument("--samples", help="a run's samples.jsonl on builtin:train to verify and train on (default: fresh base-model samples)")
    parser.add_argument("--problems", type=int, help="problems sampled, verified and trained on")
    parser.add_argument("--batch-sizes", dest="batch_sizes", type=lambda s: [int(x) for x in s.split(",")], help="sampling batch sizes, e.g. 4,16,64")
    parser.add_argument("--iteration-sizes", dest="iteration_sizes", type=lambda s: s.split(","), help="whole-iteration sizes, e.g. 4x1,8x2,16x2")
    parser.add_argument("--eval-problems", dest="eval_problems", type=int, help="held-out problems of the whole-iteration runs")
    parser.add_argument("--stages", type=_stages, help=f"stages to measure, comma-separated (default: all of {','.join(RATIOS)})")
    parser.add_argument("--tag", help="suffix of the result files, e.g. speed-TAG.md")
    return parser


def _stages(text: str) -> list[str]:
    stages = text.split(",")
    unknown = [stage for stage in stages if stage not in RATIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage {unknown[0]!r} (choose from {', '.join(RATIOS)})")
    return stages


def _table_rows(result: dict):
    for section, rows in result["sections"].items():
        for row in rows:
            yield section, row


def summary_table(result: dict) -> Table:
    table = Table(title="Speed" + (" (quick)" if result["quick"] else ""), caption="ratio: " + "; ".join(f"{s}: {RATIOS[s]}" for s in result["sections"]))
    gpu = result["machine"]["gpu"] is not None
    for name in ("stage", "variant", "work", "seconds", "rate /s", "ratio", "peak RSS MB", "with workers MB", *(["peak GPU MB"] if gpu else []), "note"):
        table.add_column(name, justify="left" if name in ("stage", "variant", "note") else "right")
    for section, r in _table_rows(result):
        cells = [section, r["variant"], f"{r['work']} {r['unit']}", f"{r['seconds']:.3g}", f"{r['rate']:.3g}", f"{r['ratio']:.3g}x"]
        cells += [str(r["peak_rss_mb"]), str(r["peak_rss_with_workers_mb"]), *([str(r["peak_gpu_mb"])] if gpu else []), r["note"]]
        table.add_row(*cells)
    return table


def markdown(result: dict) -> str:
    s = result["sizes"]
    lines = [
        "# Speed benchmark" + (" (quick)" if result["quick"] else ""),
        "",
        provenance_markdown(result),
        f"Model: `{result['model']}`. Sampling, verification and training: {s['problems']} {s.get('tasks', 'builtin')} training problems x "
        f"{s['samples_per_problem']} samples; whole iteration: {', '.join(s['iteration_sizes'])} (problems x samples), "
        f"{s['eval_problems']} held-out problems.",
        "",
        "| stage | variant | work | seconds | rate /s | ratio | peak RSS MB | with workers MB | peak GPU MB | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for section, r in _table_rows(result):
        cells = [section, r["variant"], f"{r['work']} {r['unit']}", f"{r['seconds']:.3g}", f"{r['rate']:.3g}", f"{r['ratio']:.3g}x"]
        cells += [str(r["peak_rss_mb"]), str(r["peak_rss_with_workers_mb"]), str(r["peak_gpu_mb"] or "-"), r["note"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Ratio: " + "; ".join(f"{section}: {RATIOS[section]}" for section in result["sections"]) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
