"""The speed benchmark's training stages (the project's trainer, packed and not, against TRL's defaults) and the whole iteration."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from flops import matmul_stage, parameters_of, training_gflops
from speed_tasks import task_config
from stage import LIBRARIES, measure, result_row, significant, with_ratios

from codelutra.artifacts import read_json
from codelutra.candidates import Pair, sampled_candidates
from codelutra.config import PairConfig
from codelutra.console import console
from codelutra.tasks.kinds import TaskSet
from codelutra.training.pairs import iteration_pairs


def pairs_of(task_set: str, tasks: dict, samples: list[dict], verdicts: list[list[str]]) -> list[Pair]:
    """Preference pairs the way the loop builds them, with the default settings."""
    judged = [[dataclasses.replace(c, verdict=v) for c, v in zip(sampled_candidates(row), kinds)] for row, kinds in zip(samples, verdicts)]
    return iteration_pairs(TaskSet.of(tasks.values()), judged, prompt=task_config(task_set).prompt, cfg=PairConfig(), seed=0)


def project_training_stage(model_path: str, task_set: str, pairs: list[Pair], out_dir: str, packing: bool) -> dict:
    """`train_policy` with the task set's TrainConfig (packing on or off), one epoch; returns what the FLOP count needs."""
    from codelutra.training import trl_internals
    from codelutra.training.trainer import build_trainer, train_and_save

    # The paper's loss on whole answers, which TRL's own batches compute too (the anchor is the packed trainer's alone)
    paper = {"anchor": 0.0, "rejected_window": None}
    cfg = task_config(task_set).train.model_copy(update={"packing": packing, "epochs": 1.0, **paper})
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
