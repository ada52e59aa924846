"""TRL's DPOTrainer on prefix-tree packed batches (`train.packing`, the default): every token computed once.

TRL keeps everything it does well: tokenizing the rows, the optimizer, schedule, checkpoints and resume,
LoRA and the adapter-disabled reference, accelerate's processes, the fused LM head. Replaced are only
the three places TRL has no packing for (codelutra/training/packing.py says why it has none): the
collator (one packed tree per batch), the order of the pairs (batches that share a prompt prefix), and
`compute_loss`, which reads the answers' log-probs off the tree and hands them to `preference_loss`
(codelutra/training/loss.py): exactly TRL's loss for codelutra's settings (sigmoid DPO against the kept
reference log-probs, plus the SFT term, the chosen answers' negative log-likelihood averaged over their
tokens, pooled over the batch, with TRL's weights), and DPO-Positive's anchor, which TRL has no loss type for.
Any other TRL loss setting is refused (`trl_internals.loss_terms`), never approximated.
"""

from __future__ import annotations

import contextlib

import torch
from trl import DPOTrainer

from codelutra.errors import UserError
from codelutra.generation.onednn_linear import onednn_linear_layers
from codelutra.training import trl_internals
from codelutra.training.loss import preference_loss
from codelutra.training.packing import (
    PackedPreferenceCollator,
    PrefixGroupedSampler,
    answer_logps,
    chosen_token_count,
    common_prefix_length,
    pack_pairs,
)

# Attention implementations that take a custom 4-D boolean mask as it is (the tree needs one).
MASKED_ATTENTION = ("sdpa",)
# Tokens per tree of the reference pass: enough that a database's schema is computed once for several of its
# answers, few enough that the tree's attention (dense over the tree: memory and time quadratic in its length)
# stays small: on a CPU, trees twice this long computed fewer tokens but took longer.
REFERENCE_TREE_TOKENS = 768


class PackedDPOTrainer(DPOTrainer):
    def __init__(self, *, model, args, anchor: float = 0.0, **kwargs):
        attention = getattr(model.config, "_attn_implementation", None)
        if attention not in MASKED_ATTENTION:
            raise UserError(
                f"train.packing needs the model's attention to be one of {', '.join(MASKED_ATTENTION)} (a 4-D tree mask); "
                f"this model uses {attention!r}: set train.packing=false, train.anchor=0 and train.preference_on=all"
            )
        super().__init__(model=model, args=args, data_collator=PackedPreferenceCollator(args.max_length), **kwargs)
        self.anchor = anchor  # train.anchor: DPO-Positive's lambda (codelutra/training/loss.py)

    def _set_signature_columns_if_needed(self):
        """TRL's columns and `dpo_pairs` (train.preference_on's mask): Trainer drops every column not listed here."""
        super()._set_signature_columns_if_needed()
        if "dpo_pairs" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "dpo_pairs"]

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        step = self.args.per_device_train_batch_size * max(1, self.args.world_size) * self.args.gradient_accumulation_steps
        lengths = [len(c) + len(r) for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"])]
        return PrefixGroupedSampler(dataset["prompt_ids"], lengths, step, self.args.seed)

    def reference_logps(self, sequences: list[tuple[list[int], list[int]]]) -> list[float]:
        """The reference's summed log-prob of each (prompt ids, answer ids), computed as prefix trees.

        What TRL's `compute_ref_log_probs` computes (the adapter disabled, or the frozen copy; cut at
        max_length the same way), but with the answers of a prompt sharing it and the prompts of a database
        their schema, instead of every sequence padded to its batch's longest: gold code, which the sampler
        did not score, is most of what this pass computes. Its linear layers run on weights laid out once for oneDNN
        (`onednn_linear`): the weights do not change during the pass.
        """
        unwrapped = self.accelerator.unwrap_model(self.model)
        model = self.ref_model or self.model
        adapter_off = unwrapped.disable_adapter() if self.ref_model is None and hasattr(unwrapped, "disable_adapter") else contextlib.nullcontext()
        values = [0.0] * len(sequences)
        with torch.no_grad(), adapter_off, self.accelerator.autocast(), onednn_linear_layers(model):
            for chunk in _trees_of(sequences, REFERENCE_TREE_TOKENS):
                # each sequence as a pair of itself: pack_pairs computes an answer repeated for a prompt once
                rows = [{"prompt_ids": sequences[i][0], "chosen_ids": sequences[i][1], "rejected_ids": sequences[i][1]} for i in chunk]
                batch = {key: value.to(self.accelerator.device) for key, value in pack_pairs(rows, self.args.max_length).items()}
                chosen, _ = answer_logps(model, batch)
                for i, value in zip(chunk, chosen.float().tolist()):
                    values[i] = value
        return values

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("the packed trainer computes no logits to return (evaluate with train.packing=false)")
        terms = dict(trl_internals.loss_terms(self))
        chosen, rejected = answer_logps(model, inputs)
        ref_chosen = inputs["ref_chosen_logps"].to(chosen.dtype)
        ref_rejected = inputs["ref_rejected_logps"].to(rejected.dtype)
        loss = preference_loss(
            chosen,
            rejected,
            ref_chosen,
            ref_rejected,
            chosen_token_count(inputs),
            beta=self.beta,
            dpo_weight=terms.get("sigmoid", 0.0),
            sft_weight=terms.get("sft", 0.0),
            anchor=self.anchor,
            dpo_pairs=inputs["dpo_pairs"].to(chosen.dtype) if "dpo_pairs" in inputs else None,
        )
        chosen_ratio, rejected_ratio = chosen.detach() - ref_chosen, rejected.detach() - ref_rejected
        # SFT alone has no reference log-probs (zeros stand in), so no rewards to log
        rewards = (chosen_ratio, rejected_ratio) if "sigmoid" in terms else None
        self._log_metrics(chosen, rejected, rewards, inputs["input_ids"].numel())
        return loss

    def _log_metrics(self, chosen, rejected, rewards, tokens: int) -> None:
        """TRL's log-prob and reward metrics (`rewards`: the two log-ratios, or None), gathered over the processes
        the way TRL gathers them."""
        gather = self.accelerator.gather
        trl_internals.count_tokens(self, int(gather(torch.tensor(tokens, device=chosen.device)).sum()))
        metrics = [("logps/chosen", gather(chosen.detach()).mean()), ("logps/rejected", gather(rejected.detach()).mean())]
        if rewards is not None:
            chosen_rewards, rejected_rewards = (gather(self.beta * ratio) for ratio in rewards)
            metrics = [
                ("rewards/chosen", chosen_rewards.mean()),
                ("rewards/rejected", rejected_rewards.mean()),
                ("rewards/accuracies", (chosen_rewards > rejected_rewards).float().mean()),
                ("rewards/margins", (chosen_rewards - rejected_rewards).mean()),
                *metrics,
            ]
        for name, value in metrics:
            trl_internals.log_metric(self, name, value.item())


def _trees_of(sequences: list[tuple[list[int], list[int]]], max_tokens: int) -> list[list[int]]:
    """The sequences' indices in prompt order, cut into groups whose packed tree holds at most about `max_tokens`.

    A tree as `pack_pairs` builds it computes its prompts' common prefix once, then each distinct prompt's
    rest and each answer. A sequence joins the current tree when that computes fewer tokens than a tree of
    its own would (the prefix it shares outweighs what the tree's other prompts stop sharing: so a new
    database starts a new tree, while prompts that share only the system prompt still go several to a tree)
    and the tree stays within the budget (its attention is dense: memory and time quadratic in its length).
    A sequence longer than the budget is alone.
    """
    order = sorted(range(len(sequences)), key=lambda i: sequences[i])
    groups: list[list[int]] = []
    first: list[int] = []  # the current tree's first trunk (a prompt less its last token)
    shared = trunks = distinct = answers = 0  # its common prefix, the distinct trunks' lengths and count, its answers
    previous = None
    for i in order:
        prompt, answer = sequences[i]
        trunk = prompt[:-1]
        new_prompt = prompt != previous
        if groups:
            joined_shared = min(shared, common_prefix_length([first, trunk])) if new_prompt else shared
            joined_trunks, joined_distinct = trunks + len(trunk) * new_prompt, distinct + new_prompt
            joined = joined_trunks - (joined_distinct - 1) * joined_shared + answers + len(answer)
            # joining saves the shared prefix once, and costs what the other prompts no longer share
            pays = joined_shared > (distinct - 1) * (shared - joined_shared)
        if groups and joined <= max_tokens and pays:
            shared, trunks, distinct = joined_shared, joined_trunks, joined_distinct
            answers += len(answer)
            groups[-1].append(i)
        else:
            groups.append([i])
            first, shared, trunks, distinct, answers = trunk, len(trunk), len(trunk), 1, len(answer)
        previous = prompt
    return groups
