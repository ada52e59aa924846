"""The objective of one iteration as a pure function of the answers' log-probs: L = L_DPO(beta) + lambda * L_SFT.

The packed trainer computes the log-probs; everything the loss does with them is here, so it can be read and
tested on its own. `anchor` is the one setting TRL has no loss type for: DPO-Positive (Pal et al. 2024,
"Smaug", arXiv 2402.13228), which takes `anchor` times the chosen answer's fall below the reference off the
DPO margin, so the preference term can no longer buy a wider margin by lowering the chosen answer too (the
likelihood displacement of near-miss pairs, README "What the DPO term does here").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def preference_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    *,
    beta: float,
    dpo_weight: float,
    sft_weight: float,
    anchor: float = 0.0,
    dpo_pairs: torch.Tensor | None = None,
) -> torch.Tensor:
    """The batch's loss.

    chosen, rejected: [pairs] each answer's summed token log-prob under the policy (with gradient).
    ref_chosen, ref_rejected: [pairs] the same under the reference (no gradient).
    chosen_tokens: [] the chosen answers' token count: the SFT term is their negative log-likelihood per token,
        pooled over the batch (TRL's `sft` loss type).
    dpo_weight, sft_weight: the terms' weights (0 leaves a term out: `train.loss` sft or dpo).
    anchor: DPO-Positive's lambda; 0 is TRL's sigmoid DPO exactly.
    dpo_pairs: [pairs] 1 where the DPO term contrasts the pair, 0 where the pair trains the SFT term only
        (`train.preference_on`); None: every pair. The term stays a mean over all the batch's pairs.
    """
    loss = chosen.new_zeros(())
    if dpo_weight:
        chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
        margin = chosen_ratio - rejected_ratio - anchor * torch.clamp(-chosen_ratio, min=0)
        per_pair = -F.logsigmoid(beta * margin)
        loss = loss + dpo_weight * (per_pair if dpo_pairs is None else per_pair * dpo_pairs).mean()
    if sft_weight:
        loss = loss + sft_weight * -chosen.sum() / chosen_tokens
    return loss
