"""One iteration of CodeLutra training: L = L_DPO(beta) + lambda * L_SFT, with TRL's DPOTrainer.

The reference model of the DPO term is the policy that sampled the pairs (the previous iteration).
With LoRA, each iteration starts a fresh adapter on top of that policy's weights, so TRL's
"adapter disabled" forward *is* the previous iteration; afterwards the adapter is merged and the
merged model becomes the next iteration's policy and reference. Full fine-tuning loads a frozen
copy of the same weights as the reference. `train.reference: base` makes the base model the reference
of every iteration instead: it is loaded beside the policy for the reference pass, then freed.
`train.lora_adapter: continued` trains one adapter on the base model across iterations instead of a
fresh one on each merged policy: its adapter-disabled forward is then the base model, so the previous
policy (its merged weights) is loaded as the reference.

The SFT term is TRL's `sft` loss: the negative log-likelihood of the chosen code's tokens,
averaged over those tokens (length-normalised; pooled over the batch's chosen sequences; under several
processes, over each process's share, and the processes' gradients are then averaged).

Answers are scored in the context they were sampled in: the prompt as the sampler rendered it (chat
template, then the answer prefix), the answer after the prefix, then end-of-turn. The reference's
log-probability of a sampled answer was kept by the sampler (`Candidate`), so the reference forward pass
runs once, before training, over only the sequences the sampler did not score (gold code, mostly),
instead of over every sequence at every step.

With `train.packing` (the default) the batches are prefix trees, each token computed once
(codelutra/training/packed_trainer.py); `train.packing: false` keeps TRL's own two sequences per pair.
Every TRL internal relied on is named in codelutra/training/trl_internals.py.

Training runs unchanged under `accelerate launch` or torchrun with several processes (data parallel:
`train.batch_size` is then per process); `codelutra/training/launch.py` is the program to launch.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from codelutra.artifacts import write_jsonl
from codelutra.candidates import Pair
from codelutra.config import TrainConfig
from codelutra.errors import UserError
from codelutra.generation.types import render_prompt
from codelutra.layout import IterationFiles
from codelutra.training import trl_internals

LOSS_TYPES = {
    "codelutra": ["sigmoid", "sft"],  # DPO + lambda * SFT: the paper's dual loss
    "dpo": ["sigmoid"],  # ablation: DPO alone
    "sft": ["sft"],  # ablation: SFT alone on the chosen side
}


def dpo_config(cfg: TrainConfig, output_dir: str | Path, seed: int):
    """The TRL configuration for one iteration; CPU-friendly settings where TRL's defaults target GPUs."""
    import torch
    from trl import DPOConfig

    losses = LOSS_TYPES[cfg.loss]
    weights = {"sigmoid": 1.0, "sft": cfg.sft_weight if cfg.loss == "codelutra" else 1.0}
    return DPOConfig(
        output_dir=str(output_dir),
        loss_type=losses,
        loss_weights=[weights[name] for name in losses],
        beta=cfg.beta,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        # On CPU, recomputing activations only costs time; bf16 is slow or unsupported there.
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        # Without an accelerator, accelerate joins several launched processes (over gloo) only when told that
        # it runs on the CPU; otherwise each process would train alone on its share of the data.
        use_cpu=not _has_accelerator(),
        seed=seed,
        logging_steps=5,
        logging_first_step=True,  # train_log.jsonl starts where training starts (what the DPO term did)
        save_strategy="steps",
        save_steps=cfg.checkpoint_steps,
        save_total_limit=1,
        report_to=list(cfg.report_to),  # train.report_to: tensorboard, wandb, ... (none by default)
        dataloader_num_workers=0,
    )


def build_trainer(
    policy_path: str,
    pairs: list[Pair],
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    seed: int = 0,
    reference_path: str | None = None,
    adapter: tuple[str, str] | None = None,
):
    """A TRL DPOTrainer on `pairs`, which the policy at `policy_path` sampled.

    What trains is a fresh LoRA adapter on that policy's weights (or the weights themselves: full fine-tuning),
    or, given `adapter` = (base model, adapter folder), that adapter on the base model, trained on. The
    reference is the policy at `policy_path`, or the model at `reference_path` (then no log-prob kept by the
    sampler is used: it scored under the policy).
    """
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from trl import DPOTrainer

    from codelutra.models import load_model, load_tokenizer

    trl_internals.check()
    trl_internals.score_completion_tokens_only()
    # The configuration sets up the processes first, so that each one loads the model onto its own GPU.
    args = dpo_config(cfg, IterationFiles(Path(out_dir)).checkpoints, seed)
    tokenizer = load_tokenizer(policy_path)
    tokenizer.padding_side = "right"
    reference_path = reference_path or policy_path
    peft_config = None
    if adapter:
        base_path, adapter_dir = adapter
        model = PeftModel.from_pretrained(load_model(base_path), adapter_dir, is_trainable=True)
    else:
        model = load_model(policy_path)
    if cfg.lora and not adapter:
        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=_target_modules(model, cfg),
            layers_to_transform=_top_layers(model, cfg.lora_top_layers),
            task_type="CAUSAL_LM",
        )
    rows = [preference_row(p, tokenizer) for p in pairs]
    if cfg.preference_on != "all":  # the pairs left out of the DPO term train the SFT term only (loss.py's dpo_pairs)
        rows = [row | {"dpo_pairs": float(contrasted(p, cfg.preference_on))} for row, p in zip(rows, pairs)]
    dataset = Dataset.from_list(rows)
    if (cfg.anchor or cfg.preference_on != "all") and not cfg.packing:  # a copy of a config (model_copy) is not validated again
        raise UserError("train.anchor and train.preference_on are computed by the packed trainer only: set them off with packing false")
    if cfg.packing:
        from codelutra.training.packed_trainer import PackedDPOTrainer

        trainer_class = functools.partial(PackedDPOTrainer, anchor=cfg.anchor)
    else:
        trainer_class = DPOTrainer
    # None: the reference is the adapter-disabled policy (LoRA) or TRL's frozen copy of policy_path (full fine-tuning)
    # SFT alone reads no reference log-prob, so it loads no reference and spares the reference pass (zeros stand in)
    needs_reference = cfg.loss != "sft"
    separate_reference = needs_reference and (reference_path != policy_path or adapter is not None)
    trainer = trainer_class(
        model=model,
        ref_model=load_model(reference_path) if separate_reference else None,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    reuse_kept = reference_path == policy_path  # the sampler scored its answers under policy_path
    dataset = trainer.train_dataset
    if cfg.rejected_window is not None:
        dataset = _rejected_cut_after_divergence(dataset, cfg.rejected_window)
    if needs_reference:
        dataset = _with_reference_logprobs(trainer, dataset, reuse_kept=reuse_kept)
    else:
        dataset = dataset.add_column("ref_chosen_logps", [0.0] * len(dataset)).add_column("ref_rejected_logps", [0.0] * len(dataset))
    trainer.train_dataset = dataset
    trl_internals.keep_reference_logprobs(trainer)
    trainer.ref_model = None  # a separate reference (or full fine-tuning's frozen copy) is no longer needed
    return trainer


def train_policy(
    policy_path: str,
    pairs: list[Pair],
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    seed: int = 0,
    reference_path: str | None = None,
    adapter: tuple[str, str] | None = None,
) -> Path:
    """Train on `pairs`, sampled by `policy_path` (see `build_trainer`); return the new policy's directory.

    Writes `out_dir/model` (a full model, usable as the next policy) and, with LoRA, `out_dir/adapter`.
    Trainer checkpoints go to `out_dir/checkpoints`, so an interrupted training stage resumes.
    Under several processes only the main one writes, and every process returns once `out_dir/model` exists.
    """
    trainer = build_trainer(policy_path, pairs, out_dir, cfg, seed=seed, reference_path=reference_path, adapter=adapter)
    return train_and_save(trainer, out_dir, cfg)


def train_and_save(trainer, out_dir: str | Path, cfg: TrainConfig) -> Path:
    """Train (resuming from `out_dir/checkpoints` where a checkpoint is), save, and return the new policy's directory."""
    files = IterationFiles(Path(out_dir))
    checkpoints = files.checkpoints
    _refuse_sharded_weights(trainer)
    resume = checkpoints.is_dir() and any(p.name.startswith("checkpoint-") for p in checkpoints.iterdir())
    trainer.train(resume_from_checkpoint=True if resume else None)

    accelerator = trainer.accelerator
    if accelerator.is_main_process:
        write_jsonl(files.train_log, [row for row in trainer.state.log_history if "loss" in row])
        trained, tokenizer = trainer.model, trainer.processing_class
        if cfg.lora:
            _save_atomically(trained, tokenizer, files.adapter)
            trained = trained.merge_and_unload()
        _save_atomically(trained, tokenizer, files.model)
        shutil.rmtree(checkpoints, ignore_errors=True)
    accelerator.wait_for_everyone()
    return files.model


def _has_accelerator() -> bool:
    import torch

    if hasattr(torch, "accelerator"):  # torch >= 2.6: CUDA, ROCm, XPU, MPS, ...
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def _refuse_sharded_weights(trainer) -> None:
    """The final save and merge take the main process's copy of the weights, which FSDP and ZeRO-3 shard.

    Refusing before training costs nothing; finding a model of shards after hours of GPU time costs the hours.
    """
    deepspeed = trainer.accelerator.state.deepspeed_plugin
    if trainer.is_fsdp_enabled or (deepspeed is not None and deepspeed.hf_ds_config.is_zero3()):
        raise UserError(
            "train: FSDP and DeepSpeed ZeRO-3 shard the weights, which the final save needs whole; "
            "use data parallel (accelerate launch --multi_gpu) or DeepSpeed ZeRO-1/2"
        )


def contrasted(pair: Pair, preference_on: str) -> bool:
    """Whether the DPO term contrasts this pair under `train.preference_on` (else it trains the SFT term only)."""
    if preference_on == "own":
        return pair.chosen_source != "gold"
    if preference_on == "errors":
        return pair.rejected.verdict != "wrong_result"
    return True


def preference_row(pair: Pair, tokenizer) -> dict:
    """A pair as TRL's plain-text preference row: the prompt as the sampler wrote it, the answers after it.

    TRL appends end-of-turn to each answer. The sampler's tokens and log-prob of each answer come along,
    with the prompt's tokens as the sampler saw them, to check that TRL scores exactly those tokens.
    """
    prefix = pair.answer_prefix
    sampled_text = render_prompt(tokenizer, pair.prompt, prefix)
    text = sampled_text
    # TRL tokenizes plain text with the tokenizer's special tokens; the chat template already wrote them.
    if tokenizer.bos_token and text.startswith(tokenizer.bos_token) and tokenizer("").input_ids[:1] == [tokenizer.bos_token_id]:
        text = text[len(tokenizer.bos_token) :]
    row = {"prompt": text, "sampled_prompt_ids": tokenizer(sampled_text, add_special_tokens=False).input_ids}
    for side, answer in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        if not answer.text.startswith(prefix):
            raise UserError(
                f"pair {pair.problem_id!r}: the {side} answer does not start with the answer prefix {prefix!r} "
                "(prompt.answer_prefix must begin the gold answers' format, e.g. ```sql)"
            )
        row[side] = answer.text[len(prefix) :]
        row[f"{side}_sampled_ids"] = answer.token_ids
        row[f"{side}_sampled_logprob"] = answer.logprob
    return row


def _rejected_cut_after_divergence(dataset, window: int):
    """Each rejected answer cut `window` tokens after the first token where it leaves its chosen answer.

    The DPO term then pushes down where the failure starts, not the tokens after it, which a near miss shares
    with right answers (`train.rejected_window`). The tokens before the divergence cancel in the log-ratio
    difference anyway. A cut answer no longer matches what the sampler scored, so its reference is computed.
    """
    from codelutra.training.packing import common_prefix_length

    def cut(row: dict) -> dict:
        start = common_prefix_length([row["chosen_ids"], row["rejected_ids"]])
        return {"rejected_ids": row["rejected_ids"][: start + window]}

    return dataset.map(cut, desc="cutting rejected answers after their divergence")


def _with_reference_logprobs(trainer, dataset, reuse_kept: bool = True):
    """`dataset` (tokenized by TRL) with the columns ref_chosen_logps and ref_rejected_logps.

    A kept log-prob is used (with `reuse_kept`: the sampler's policy is the reference) where TRL scores
    exactly the tokens the sampler scored: the same prompt tokens, the sampled answer's tokens plus
    end-of-turn, nothing cut by max_length. Every other sequence gets one forward pass of the reference
    (the adapter disabled, or the separate reference model): as prefix trees under `train.packing`, TRL's
    own computation otherwise.
    """
    from codelutra.console import console

    eos, max_length = trainer.processing_class.eos_token_id, trainer.args.max_length
    values = {"chosen": [0.0] * len(dataset), "rejected": [0.0] * len(dataset)}
    todo = []  # (side, row, prompt ids, completion ids) for the reference pass
    for i, row in enumerate(dataset):
        for side in ("chosen", "rejected"):
            ids, kept = row[f"{side}_sampled_ids"], row[f"{side}_sampled_logprob"]
            reusable = (
                reuse_kept
                and kept is not None
                and row["prompt_ids"] == row["sampled_prompt_ids"]
                and row[f"{side}_ids"] == [*ids, eos]
                and (max_length is None or len(row["prompt_ids"]) + len(row[f"{side}_ids"]) <= max_length)
            )
            if reusable:
                values[side][i] = kept
            else:
                todo.append((side, i, row["prompt_ids"], row[f"{side}_ids"]))
    if hasattr(trainer, "reference_logps"):  # the packed trainer: prefix trees (codelutra/training/packed_trainer.py)
        computed = trainer.reference_logps([(prompt, answer) for _, _, prompt, answer in todo])
    else:
        computed = _trl_reference_logps(trainer, todo)
    for (side, i, _, _), value in zip(todo, computed):
        values[side][i] = value
    reused = 2 * len(dataset) - len(todo)
    console.print(f"reference log-probs: {reused} kept from sampling, {len(todo)} computed in one pass")
    return dataset.add_column("ref_chosen_logps", values["chosen"]).add_column("ref_rejected_logps", values["rejected"])


def _trl_reference_logps(trainer, todo: list[tuple]) -> list[float]:
    """TRL's own reference pass over padded batches (`train.packing: false`)."""
    import torch

    values, batch_size = [], 2 * trainer.args.per_device_train_batch_size
    model = trainer.ref_model or trainer.model
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        padded = chunk + chunk[-1:] * (len(chunk) % 2)  # TRL's pass splits a batch into two halves
        values += torch.cat(trainer.compute_ref_log_probs(model, _reference_batch(padded, trainer))).tolist()[: len(chunk)]
    return values


def _reference_batch(rows: list[tuple], trainer) -> dict:
    """Right-padded input ids, attention and completion masks, as TRL's collator builds them (truncation too)."""
    import torch

    max_length, pad = trainer.args.max_length, trainer.processing_class.pad_token_id
    sequences = [(list(p) + list(c))[:max_length] for _, _, p, c in rows]
    masks = [([0] * len(p) + [1] * len(c))[:max_length] for _, _, p, c in rows]
    width = max(len(s) for s in sequences)
    device = trainer.accelerator.device
    return {
        "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in sequences], device=device),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=device),
        "completion_mask": torch.tensor([m + [0] * (width - len(m)) for m in masks], device=device),
    }


def _target_modules(model, cfg: TrainConfig) -> list[str] | str:
    """PEFT takes "all-linear" only for all layers; for the top layers alone, name the linear modules."""
    if cfg.lora_target_modules != "all-linear" or cfg.lora_top_layers is None:
        return cfg.lora_target_modules
    import torch

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    return sorted(names - {"lm_head"})


def _top_layers(model, n: int | None) -> list[int] | None:
    if n is None:
        return None
    total = model.config.num_hidden_layers
    return list(range(max(0, total - n), total))


def _save_atomically(model, tokenizer, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
