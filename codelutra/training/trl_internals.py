"""Every TRL (and transformers Trainer) internal the trainer relies on, named here and checked in one place.

TRL's DPOTrainer is built on and extended, not copied; where that reaches past TRL's public API (a
private name, an attribute set after `__init__`, a method overridden, a batch key), the use goes
through this module, and `check()` pins each one. `tests/test_trl_internals.py` runs it, and so does
every trainer build, so that an upgrade which changes one fails loudly, naming it, instead of training
on a silently different loss. `pyproject.toml` bounds `trl` to the versions the tests have seen.
"""

from __future__ import annotations

import inspect

TESTED_TRL = ">=1.0,<1.17"  # the bound in pyproject.toml; 1.16 is the version the tests ran on

# name -> what codelutra does with it (the messages of `check` name these)
INTERNALS = {
    "trl.trainer.utils._use_triton": "patched to True so that the fused LM head scores only completion tokens on CPU",
    "trl.trainer.utils.add_fused_lm_head": "model(..., fused_lm_head=True, shift_labels=...) returns per-token log_probs",
    "DPOTrainer.precompute_ref_logps": "set to True after __init__: the batch carries the kept reference log-probs",
    "DPOTrainer.compute_ref_log_probs": "the reference pass (adapter disabled) for log-probs the sampler did not keep",
    "DPOTrainer._metrics": "the packed trainer logs TRL's reward metrics into it",
    "DPOTrainer._total_train_tokens": "the packed trainer counts the tokens it computes into it (TRL's num_tokens)",
    "DPOTrainer loss settings": "loss_types, loss_weights, beta, ld_alpha, f_divergence_type, use_weighting, aux_loss_enabled",
    "DPOTrainer dataset columns": "prompt_ids, chosen_ids, rejected_ids (end-of-turn appended to the answers)",
    "DataCollatorForPreference": "its batch keys and layout, which the reference pass builds for rows of its own",
    "Trainer._get_train_sampler": "overridden by the packed trainer: batches of pairs that share a prefix",
    "Trainer.compute_loss": "overridden by the packed trainer: the loss of one packed tree",
    "Trainer._remove_unused_columns": "keeps the columns of _signature_columns, which the packed trainer extends by dpo_pairs",
}

COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
REFERENCE_BATCH_KEYS = {"input_ids", "attention_mask", "completion_mask"}
SUPPORTED_LOSSES = {"sigmoid", "sft"}


class TRLInternalChanged(RuntimeError):
    """TRL changed something codelutra relies on; the message names it."""


def score_completion_tokens_only() -> None:
    """Make TRL's fused LM head score only completion tokens on every device, not just on Triton ones.

    Where Triton is absent (CPU), TRL scores every position, prompt included, and masks afterwards, so that
    tile shapes stay fixed for compilers such as Neuron's. On CPU that is waste: prompts are most of each
    sequence and the vocabulary projection is a large share of a step. This flips only that choice; the
    kernels keep their own device check, and results are identical.
    """
    import trl.trainer.utils as trl_utils

    trl_utils._use_triton = lambda device: True


def keep_reference_logprobs(trainer) -> None:
    """TRL's switch for "the batch carries the reference log-probs"; set after __init__, where setting it
    through DPOConfig would make TRL recompute them all (`precompute_ref_log_probs`)."""
    trainer.precompute_ref_logps = True


def loss_terms(trainer) -> list[tuple[str, float]]:
    """(loss type, weight) of the trainer, refusing any TRL setting the packed loss does not compute."""
    unsupported = {
        "loss_type": set(trainer.loss_types) - SUPPORTED_LOSSES,
        "ld_alpha": trainer.ld_alpha is not None,
        "f_divergence_type": trainer.f_divergence_type != "reverse_kl",
        "use_weighting": trainer.use_weighting,
        "router aux loss": trainer.aux_loss_enabled,
        "precompute_ref_logps": not trainer.precompute_ref_logps,
    }
    bad = [name for name, value in unsupported.items() if value]
    if bad:
        raise TRLInternalChanged(f"the packed trainer computes sigmoid DPO + SFT only; unsupported TRL setting: {', '.join(bad)}")
    return list(zip(trainer.loss_types, trainer.loss_weights, strict=True))


def log_metric(trainer, name: str, value: float) -> None:
    trainer._metrics["train" if trainer.model.training else "eval"][name].append(value)


def count_tokens(trainer, tokens: int) -> None:
    if trainer.model.training:
        trainer._total_train_tokens += tokens
    trainer._metrics["train" if trainer.model.training else "eval"]["num_tokens"] = [trainer._total_train_tokens]


def tokens_computed(trainer) -> int:
    """Tokens the trainer ran its training steps on (TRL: its sequences' non-padding tokens; packed: the trees')."""
    return trainer._total_train_tokens


def check() -> None:
    """Raise TRLInternalChanged naming the first internal that is missing or changed."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import Trainer
    from trl import DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    def require(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise TRLInternalChanged(f"TRL internal changed: {name} ({INTERNALS[name]}): {what}; codelutra is tested with trl{TESTED_TRL}")

    require(callable(getattr(trl_utils, "_use_triton", None)), "trl.trainer.utils._use_triton", "no such function")
    fused = inspect.getsource(getattr(trl_utils, "add_fused_lm_head", lambda: None))
    for needle in ("shift_labels", "fused_lm_head", "_use_triton(", "log_probs"):
        require(needle in fused, "trl.trainer.utils.add_fused_lm_head", f"its source no longer mentions {needle!r}")
    init, loss = inspect.getsource(DPOTrainer.__init__), inspect.getsource(DPOTrainer._compute_loss)
    require("self.precompute_ref_logps" in loss and 'inputs["ref_chosen_logps"]' in loss, "DPOTrainer.precompute_ref_logps", "no longer read from the batch")
    require(list(inspect.signature(DPOTrainer.compute_ref_log_probs).parameters) == ["self", "model", "inputs"], "DPOTrainer.compute_ref_log_probs", "signature changed")
    for name in ("_metrics", "_total_train_tokens"):
        require(f"self.{name} =" in init, f"DPOTrainer.{name}", "no longer set in __init__")
    for name in ("loss_types", "loss_weights", "beta", "ld_alpha", "f_divergence_type", "use_weighting", "aux_loss_enabled"):
        require(f"self.{name} =" in init, "DPOTrainer loss settings", f"self.{name} no longer set in __init__")
    for loss_type, line in (("sigmoid", "-F.logsigmoid(self.beta * delta_score)"), ("sft", "-chosen_per_token_logps[chosen_mask.bool()].mean()")):
        require(line in loss, "DPOTrainer loss settings", f"the {loss_type!r} loss is no longer {line}")
    columns = inspect.getsource(DPOTrainer._set_signature_columns_if_needed)
    require(all(f'"{c}"' in columns for c in COLUMNS), "DPOTrainer dataset columns", "the tokenized columns changed")
    drop = inspect.getsource(Trainer._remove_unused_columns)
    require("self._set_signature_columns_if_needed()" in drop and "self._signature_columns" in drop, "Trainer._remove_unused_columns", "no longer keeps the columns of _signature_columns")
    prepare = inspect.getsource(DPOTrainer._prepare_dataset)
    require("add_eos" in prepare, "DPOTrainer dataset columns", "end-of-turn is no longer appended to the answers")
    batch = DataCollatorForPreference(pad_token_id=0)([{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5]}])
    require(set(batch) == REFERENCE_BATCH_KEYS, "DataCollatorForPreference", f"batch keys are now {sorted(batch)}")
    require(torch.equal(batch["completion_mask"], torch.tensor([[0, 0, 1, 0], [0, 0, 1, 1]])), "DataCollatorForPreference", "the layout changed")
    require(list(inspect.signature(Trainer._get_train_sampler).parameters) == ["self", "train_dataset"], "Trainer._get_train_sampler", "signature changed")
    require(
        list(inspect.signature(Trainer.compute_loss).parameters) == ["self", "model", "inputs", "return_outputs", "num_items_in_batch"],
        "Trainer.compute_loss",
        "signature changed",
    )
