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
* the whole iteration (the project's `Refiner`, one iteration) at three sizes, problems x samples.

The problems (--tasks) are builtin:train's, or the Spider training databases' of configs/spider.yaml
(../shared/data/spider), taken database after database as the loop's batches hold them (the loop sorts a
call's prompts, so a batch is one database's problems), with that task set's prompt, token budget and
training length. The candidates are the base model's samples on them, or a run's samples.jsonl (--samples). Peak memory: the stage process's own peak resident set (getrusage, exact), and the
peak of the process together with its workers (sandbox processes), sampled every 50 ms with psutil.
Scratch runs go to OUTPUT/runs/speed-* and are redone from scratch each time. Results go to
benchmarks/results/speed[-quick][-spider][-TAG].{json,md}; --stages measures only some stages (verification and training
need samples: --samples, or the sampling stage runs too).

Usage: python benchmarks/speed.py [--quick] [--tasks builtin|spider] [--model M] [--output DIR] [--samples FILE] [--stages S,...] [--tag T]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from flops import forward_gflops, matmul_stage, parameters_of, training_gflops
from record import (
    REPO,
    RESULTS,
    SPIDER,
    SPIDER_PATHS,
    provenance,
    provenance_markdown,
    write_results,
)
from rich.table import Table
from stage import LIBRARIES, measure, result_row, significant, with_ratios

from codelutra.artifacts import read_json, read_jsonl
from codelutra.candidates import Pair, sampled_candidates
from codelutra.config import (
    PairConfig,
    RunConfig,
    VerifyConfig,
    load_config,
)
from codelutra.console import console, tables
from codelutra.execution.sql import verify_sql
from codelutra.execution.sql_match import gold_is_ordered, results_match
from codelutra.generation.types import SamplingParams
from codelutra.models import EMBEDDED_DEFAULT, resolve_model
from codelutra.tasks.kinds import SQL, TaskSet
from codelutra.tasks.sources import load_tasks
from codelutra.training.pairs import iteration_pairs

# Task sets: the config file a run on them starts from (training pool, prompt, token budget, max_length), and overrides.
TASK_SETS = {"builtin": (None, []), "spider": (REPO / "configs" / "spider.yaml", SPIDER_PATHS)}

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
    if "shared_sampling" in stages:
        shared_sizes = {**SHARED_SAMPLING_SIZES["quick" if args.quick else "full"], **({"problems": args.problems} if args.problems else {})}
        sections["shared_sampling"] = measure_shared_sampling(model, args.tasks, shared_sizes)
    if args.samples:
        samples = read_jsonl(args.samples)[: sizes["problems"]]
    if {"verification", "training"} & set(stages):
        tasks = _tasks_of(args.tasks, samples)
        verification, verdicts = measure_verification(tasks, samples)  # training needs the verdicts
        if "verification" in stages:
            sections["verification"] = verification
        if "training" in stages:
            sections["training"] = measure_training(model, args.tasks, _pairs(args.tasks, tasks, samples, verdicts), scratch)
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


# ---------------------------------------------------------------------------------------------
# Sampling


def sample_stage(model_path: str, task_set: str, problems: int, samples: int, batch_size: int) -> dict:
    """Sample with the project's defaults (temperature, top_p, max_new_tokens) and, as the sampling stage's
    backend does, oneDNN linear layers; time the generation only."""
    from codelutra.candidates import sample_row
    from codelutra.generation.onednn_linear import onednn_linear_layers
    from codelutra.generation.sampler import generate
    from codelutra.models import load_model, load_tokenizer

    cfg = task_config(task_set)
    tasks, prompt, s = _train_tasks(task_set, problems), cfg.prompt, cfg.sampling
    model, tokenizer = load_model(model_path), load_tokenizer(model_path)
    prefix = SQL.answer_prefix(prompt)
    messages = [SQL.messages(task, prompt) for task in tasks]
    params = SamplingParams(
        n=samples, temperature=s.temperature, top_p=s.top_p, max_new_tokens=SQL.max_new_tokens(s.max_new_tokens),
        batch_size=batch_size, seed=0, keep_logprobs=True,
    )
    run = functools.partial(generate, model, tokenizer, answer_prefix=prefix, params=params)
    with onednn_linear_layers(model):
        run(messages[:1])  # warm-up: first-call costs are not throughput
        start = time.perf_counter()
        completions = run(messages)
        seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for row in completions for c in row)
    samples = [sample_row(t.id, row) for t, row in zip(tasks, completions)]
    return {"samples": samples, "tokens": tokens, "seconds": seconds}


def measure_sampling(model: str, sizes: dict) -> tuple[list[dict], list[dict]]:
    """Tokens/s per batch size; also returns the samples of the largest batch size for the later stages."""
    rows, samples = [], []
    for batch_size in sorted(sizes["batch_sizes"]):
        console.print(f"speed: sampling {sizes['problems']} problems x {sizes['samples_per_problem']}, batch size {batch_size}")
        m = measure(sample_stage, model, sizes["tasks"], sizes["problems"], sizes["samples_per_problem"], batch_size, preload=LIBRARIES)
        out = m["value"]
        # the rate is over generation alone (the stage's seconds include loading the model)
        rows.append(result_row(f"batch {batch_size} sequences", out["tokens"], "tokens", {**m, "seconds": out["seconds"]}, f"{m['seconds']:.1f} s with loading the model"))
        samples = out["samples"]
    return with_ratios(rows, rows[0]), samples


# ---------------------------------------------------------------------------------------------
# Shared-prefix sampling against plain generate

# Problems: the training pool's, database after database (`_train_tasks`), as a batch of the loop holds them;
# n = 8 takes a twelfth of them. Full: n = 1 fills the 64-sequence batch three times, as a sampling stage does
# (the default run samples 480 problems), and n = 8 twice (16 x 8 rows). max_new_tokens: the project's
# default, shorter when quick.
SHARED_SAMPLING_SIZES = {
    "full": {"problems": 192, "max_new_tokens": 64},
    "quick": {"problems": 24, "max_new_tokens": 32},
}


def shared_sampling_stage(model_path: str, task_set: str, problems: int, n: int, max_new_tokens: int, shared_prefix: bool, onednn: bool) -> dict:
    """Sample with the task set's temperature, top_p and batch size; time the generation and count the tokens computed.

    `onednn`: with the linear layers run by oneDNN as the sampling stage's backend runs them (`onednn_linear`).
    """
    from codelutra.generation.onednn_linear import onednn_linear_layers
    from codelutra.generation.sampler import generate
    from codelutra.models import load_model, load_tokenizer

    cfg = task_config(task_set)
    tasks, prompt, s = _train_tasks(task_set, problems), cfg.prompt, cfg.sampling
    model, tokenizer = load_model(model_path), load_tokenizer(model_path)
    messages = [SQL.messages(task, prompt) for task in tasks]
    params = SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p, max_new_tokens=max_new_tokens, batch_size=s.batch_size, seed=0, keep_logprobs=True)
    run = functools.partial(generate, model, tokenizer, answer_prefix=SQL.answer_prefix(prompt), params=params, shared_prefix=shared_prefix)
    computed, forward = [0], model.forward

    def counting_forward(*args, **kwargs):  # every token a forward pass is given, padding included
        computed[0] += kwargs["input_ids"].numel()
        return forward(*args, **kwargs)

    with onednn_linear_layers(model) if onednn else contextlib.nullcontext():
        run(messages[:1])  # warm-up: first-call costs are not throughput
        model.forward = counting_forward
        start = time.perf_counter()
        completions = run(messages)
        seconds = time.perf_counter() - start
        model.forward = forward
        out = {"seconds": seconds, "computed": computed[0], "parameters": sum(p.numel() for p in model.parameters())}
        if not shared_prefix and not onednn:  # the same batches, prompts only: what computing no prompt token would save at most
            start = time.perf_counter()
            run(messages, params=dataclasses.replace(params, max_new_tokens=1, keep_logprobs=False))
            out["prefill_seconds"] = time.perf_counter() - start
    return {**out, "tokens": sum(len(c.token_ids) for row in completions for c in row)}


# The rows of each n: (label, shared_prefix, onednn). The first is the baseline of the ratios; the second
# holds the linear layers' kernel as the sampler has it, so that the third's gain over it is token sharing's.
SHARED_SAMPLING_VARIANTS = (
    ("plain generate", False, False),
    ("plain generate, oneDNN linear layers", False, True),
    ("shared-prefix sampler", True, True),
)


def measure_shared_sampling(model: str, task_set: str, sizes: dict) -> list[dict]:
    """Tokens/s of plain generate and of the shared-prefix sampler on the same prompts, n = 1 and n = 8.

    Each row's note gives its achieved GFLOP/s (forward FLOPs taken as 2 x parameters x tokens computed,
    padding included) beside the plain matmul's; the sampler's, its ratio to plain generate with the
    same oneDNN layers.
    """
    matmul = measure(matmul_stage, preload=("torch",))["value"]
    rows = []
    for n, problems in ((1, sizes["problems"]), (8, max(1, sizes["problems"] // 12))):
        rates = {}
        for variant, shared, onednn in SHARED_SAMPLING_VARIANTS:
            label = f"{variant}, {problems} problems x {n}"
            console.print(f"speed: sampling, {label}")
            m = measure(shared_sampling_stage, model, task_set, problems, n, sizes["max_new_tokens"], shared, onednn, preload=LIBRARIES)
            out = m["value"]
            gflops = forward_gflops(out["parameters"], out["computed"], out["seconds"])
            note = f"{out['computed']} tokens computed; {gflops:.3g} GFLOP/s, fp32 matmul {matmul:.3g} GFLOP/s"
            if "prefill_seconds" in out:  # decoding the same rows as generate does, with prefill free, reaches this ratio
                decode = out["seconds"] - out["prefill_seconds"]
                note += f"; its prefill alone {out['prefill_seconds']:.3g} s: with a free prefill and its decoding, {out['seconds'] / decode:.3g}x"
            row = result_row(label, out["tokens"], "tokens", {**m, "seconds": out["seconds"]}, note)
            rates[(shared, onednn)] = row["rate"]
            if shared:
                row["note"] += f"; {row['rate'] / rates[(False, True)]:.3g}x plain generate with oneDNN layers"
            rows.append({**row, "ratio": significant(row["rate"] / rates[(False, False)]), "n": n})
    return rows


def shared_sampling_ratio_line(rows: list[dict]) -> str:
    """The line `--quick` ends with: the lower of the n = 1 and n = 8 ratios."""
    ratio = min(row["ratio"] for row in rows if row["variant"].startswith("shared"))
    return f"ratio sampling_shared_vs_plain {ratio:.3g}x"


# ---------------------------------------------------------------------------------------------
# Verification


def sandboxed_serial_stage(checks: list) -> list[str]:
    """The baseline: one candidate at a time, each in a sandbox of its own (`verify_sql` on one check,
    which starts a worker, runs gold and candidate, and ends it): the plain way with the same safety."""
    timeout_s = VerifyConfig().timeout_s
    return [verify_sql([check], timeout_s=timeout_s, workers=1)[0].kind for check in checks]


def in_process_stage(checks: list) -> list[bool]:
    """The floor: in this process, for each candidate open its database read-only, run gold and candidate.

    No sandbox, so not a way to run model output; shown for what the sandbox costs. Judged with the
    project's comparison (`results_match`), so that only the running differs. A deadline per query
    keeps a runaway candidate from stalling the benchmark.
    """
    ordered = functools.cache(gold_is_ordered)
    timeout_s = VerifyConfig().timeout_s
    correct = []
    for check in checks:
        if not check.candidate_sql:
            correct.append(False)
            continue
        db = sqlite3.connect(Path(check.db_path).resolve().as_uri() + "?mode=ro", uri=True)
        deadline = time.monotonic() + timeout_s
        db.set_progress_handler(lambda deadline=deadline: time.monotonic() > deadline, 1000)
        try:
            gold = db.execute(check.gold_sql).fetchall()
            candidate = db.execute(check.candidate_sql).fetchall()
            correct.append(results_match(gold, candidate, ordered=ordered(check.gold_sql)))
        except (sqlite3.Error, ValueError):  # ValueError: a NUL character in the SQL
            correct.append(False)
        finally:
            db.close()
    return correct


def verify_stage(checks: list, workers: int | None) -> list[str]:
    return [v.kind for v in verify_sql(checks, timeout_s=VerifyConfig().timeout_s, workers=workers)]


def measure_verification(tasks: dict, samples: list[dict]) -> tuple[list[dict], list[list[str]]]:
    """Candidates/s of the serial loops and of `verify_sql` (1 worker, one per core); returns the latter's verdicts."""
    checks = [SQL.check(tasks[row["id"]], SQL.extract(c)) for row in samples for c in row["completions"]]
    console.print(f"speed: verifying {len(checks)} candidates")
    serial = measure(sandboxed_serial_stage, checks)
    plain = measure(in_process_stage, checks)
    rows = [
        result_row("serial loop, a sandbox per candidate", len(checks), "candidates", serial),
        result_row("in-process sqlite3 loop, no sandbox", len(checks), "candidates", plain, "not safe for model output: the floor"),
    ]
    for workers, label in ((1, "verify_sql, 1 worker"), (None, "verify_sql, a worker per core")):
        m = measure(verify_stage, checks, workers)
        agree = sum(kind == other for kind, other in zip(m["value"], serial["value"]))
        versus_plain = plain["seconds"] / m["seconds"]
        rows.append(result_row(label, len(checks), "candidates", m, f"{versus_plain:.2g}x the in-process loop; same verdicts as the serial loop on {agree}/{len(checks)}"))
        verdicts = m["value"]  # the last run's (a worker per core) go on to build the training pairs
    per_problem, i = [], 0
    for row in samples:
        per_problem.append(verdicts[i : i + len(row["completions"])])
        i += len(row["completions"])
    return with_ratios(rows, rows[0]), per_problem


# ---------------------------------------------------------------------------------------------
# Training


def _pairs(task_set: str, tasks: dict, samples: list[dict], verdicts: list[list[str]]) -> list[Pair]:
    """Preference pairs the way the loop builds them, with the default settings."""
    judged = [[dataclasses.replace(c, verdict=v) for c, v in zip(sampled_candidates(row), kinds)] for row, kinds in zip(samples, verdicts)]
    return iteration_pairs(TaskSet.of(tasks.values()), judged, prompt=task_config(task_set).prompt, cfg=PairConfig(), seed=0)


def project_training_stage(model_path: str, task_set: str, pairs: list[Pair], out_dir: str, packing: bool) -> dict:
    """`train_policy` with the task set's TrainConfig (packing on or off), one epoch; returns what the FLOP count needs."""
    from codelutra.training import trl_internals
    from codelutra.training.trainer import build_trainer, train_and_save

    cfg = task_config(task_set).train.model_copy(update={"packing": packing, "epochs": 1.0})
    trainer = build_trainer(model_path, pairs, out_dir, cfg)
    parameters = parameters_of(trainer.model)
    train_and_save(trainer, out_dir, cfg)
    return {"tokens": trl_internals.tokens_computed(trainer), "parameters": parameters, "forward_passes_per_step": 1}


def trl_defaults_stage(model_path: str, task_set: str, pairs: list[Pair], out_dir: str) -> dict:
    """TRL's DPOTrainer as a newcomer starts it: DPOConfig and PEFT's LoraConfig at their defaults.

    Changed only where needed: one epoch (as the project's stage here, so both see each pair once; TRL's
    default is 3) and bf16 only where the GPU has it (TRL's default bf16=True refuses to start on a CPU).
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from codelutra.models import load_model, load_tokenizer
    from codelutra.training import trl_internals
    from codelutra.training.trainer import preference_row

    tokenizer = load_tokenizer(model_path)
    rows = [preference_row(p, tokenizer) for p in pairs]  # the same token sequences as train_policy's
    args = DPOConfig(
        output_dir=out_dir,
        num_train_epochs=1,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )
    trainer = DPOTrainer(
        model=load_model(model_path),
        args=args,
        train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]),
        processing_class=tokenizer,
        peft_config=LoraConfig(task_type="CAUSAL_LM"),  # task_type is required for a causal LM
    )
    parameters = parameters_of(trainer.model)
    trainer.train()
    trainer.save_model(out_dir)
    return {"tokens": trl_internals.tokens_computed(trainer), "parameters": parameters, "forward_passes_per_step": 2}  # + reference


def measure_training(model: str, task_set: str, pairs: list[Pair], scratch: Path) -> list[dict]:
    """Pairs/s of each whole training stage: loading the model, training one epoch, saving the result."""
    kept = sum(answer.logprob is not None for p in pairs for answer in (p.chosen, p.rejected))
    kept_note = f"{kept} of {2 * len(pairs)} sequences kept"
    variants = (
        (trl_defaults_stage, (pairs,), "TRL DPOTrainer, defaults", ""),
        (project_training_stage, (pairs, False), "train_policy, TRL batches (packing off), reference log-probs kept", kept_note),
        (project_training_stage, (pairs, True), "train_policy, packed, reference log-probs kept", kept_note),  # last: the headline
    )
    matmul = measure(matmul_stage, preload=("torch",))["value"]
    rows = []
    for i, (stage, stage_args, label, note) in enumerate(variants):
        out_dir = scratch / f"speed-training-{i}"
        shutil.rmtree(out_dir, ignore_errors=True)
        console.print(f"speed: training on {len(pairs)} pairs: {label}")
        m = measure(stage, model, task_set, stage_args[0], str(out_dir), *stage_args[1:], preload=LIBRARIES)
        gflops = training_gflops(m["value"], m["seconds"])
        flop_note = f"{gflops:.3g} GFLOP/s over {m['value']['tokens']} tokens (matmul: {matmul:.3g} GFLOP/s)"
        row = result_row(label, len(pairs), "pairs", m, "; ".join(filter(None, [note, flop_note])))
        rows.append({**row, "tokens": m["value"]["tokens"], "gflop_per_s": significant(gflops), "matmul_gflop_per_s": significant(matmul)})
    return with_ratios(rows, rows[0])


# ---------------------------------------------------------------------------------------------
# The whole iteration


def iteration_stage(model_path: str, task_set: str, problems: int, samples: int, eval_problems: int, output: str) -> dict:
    """One iteration of the project's loop at this size; returns the base model's evaluation seconds, pairs, training seconds."""
    from codelutra.loop.refine import Refiner

    cfg = task_config(
        task_set,
        [
            f"model.name={model_path}", f"output_dir={output}", f"name=speed-iteration-{problems}x{samples}",
            f"train_tasks.limit={problems}", f"sampling.n={samples}", f"eval_tasks.limit={eval_problems}", "max_iterations=1",
        ],
    )
    refiner = Refiner(cfg)
    shutil.rmtree(refiner.run_dir, ignore_errors=True)  # a fresh run, never a resumed one
    history = refiner.run()
    first = refiner.layout.iteration(1)
    return {
        "base_eval_seconds": history[0]["seconds"],
        "pairs": read_json(first.train_info)["pairs"],
        "train_seconds": read_json(first.timings)["train"],
    }


def measure_iterations(model: str, task_set: str, sizes: dict, scratch: Path) -> list[dict]:
    """Seconds of one iteration (sample, verify, pair, train, evaluate; not the base model's evaluation) per size."""
    rows = []
    for size in sizes["iteration_sizes"]:
        problems, samples = (int(x) for x in size.split("x"))
        console.print(f"speed: one iteration, {problems} problems x {samples} samples")
        m = measure(iteration_stage, model, task_set, problems, samples, sizes["eval_problems"], str(scratch.parent), preload=LIBRARIES)
        out = m["value"]
        seconds = m["seconds"] - out["base_eval_seconds"]
        note = f"{out['pairs']} pairs, training {out['train_seconds']:.1f} s"
        rows.append(result_row(f"{problems} problems x {samples} samples", problems * samples, "candidates", {**m, "seconds": seconds}, note))
    return with_ratios(rows, rows[0], key="seconds")


# ---------------------------------------------------------------------------------------------
# Tasks and reporting


def task_config(task_set: str, overrides: list[str] = ()) -> RunConfig:
    """The configuration a run on this task set starts from (the defaults, or configs/spider.yaml)."""
    path, paths = TASK_SETS[task_set]
    return load_config(path, [*paths, *overrides])


def _train_tasks(task_set: str, problems: int | None = None) -> list:
    """The task set's training pool, database after database (each in the pool's order): a batch of the loop's."""
    source = task_config(task_set).train_tasks
    tasks, _ = load_tasks(source.model_copy(update={"limit": None}))
    return sorted(tasks, key=lambda t: t.db_id)[:problems]


def _tasks_of(task_set: str, samples: list[dict]) -> dict:
    """The training tasks the samples answer, by id."""
    tasks = {t.id: t for t in _train_tasks(task_set)}
    unknown = [row["id"] for row in samples if row["id"] not in tasks]
    if unknown:
        raise SystemExit(f"speed: samples for problems that are not in the {task_set} training pool, e.g. {unknown[0]!r}")
    return tasks


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
