"""The objective as a pure function (codelutra/training/loss.py): TRL's formula, and DPO-Positive's anchor."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from codelutra.training.loss import preference_loss


def _batch():
    torch.manual_seed(0)
    chosen = torch.randn(5, requires_grad=True)
    rejected = torch.randn(5, requires_grad=True)
    return chosen, rejected, torch.randn(5), torch.randn(5), torch.tensor(37.0)


def test_without_the_anchor_it_is_trls_sigmoid_dpo_plus_the_sft_term():
    chosen, rejected, ref_chosen, ref_rejected, tokens = _batch()
    loss = preference_loss(chosen, rejected, ref_chosen, ref_rejected, tokens, beta=0.1, dpo_weight=1.0, sft_weight=2.0)
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)
    expected = -F.logsigmoid(0.1 * margin).mean() + 2.0 * (-chosen.sum() / tokens)
    assert torch.allclose(loss, expected)


def test_a_zero_weight_leaves_its_term_out():
    chosen, rejected, ref_chosen, ref_rejected, tokens = _batch()
    sft = preference_loss(chosen, rejected, ref_chosen, ref_rejected, tokens, beta=0.1, dpo_weight=0.0, sft_weight=1.0)
    dpo = preference_loss(chosen, rejected, ref_chosen, ref_rejected, tokens, beta=0.1, dpo_weight=1.0, sft_weight=0.0)
    assert torch.allclose(sft, -chosen.sum() / tokens)
    assert torch.allclose(dpo, -F.logsigmoid(0.1 * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean())


def test_the_anchor_acts_only_where_the_chosen_answer_fell_below_the_reference():
    ref = torch.zeros(2)
    chosen = torch.tensor([0.5, -2.0])  # one above its reference, one fallen 2 nats below
    rejected = torch.tensor([-3.0, -3.0])
    def loss(i: int, anchor: float) -> torch.Tensor:
        one = slice(i, i + 1)
        return preference_loss(chosen[one], rejected[one], ref[:1], ref[:1], torch.tensor(1.0), beta=0.1, dpo_weight=1.0,
                               sft_weight=0.0, anchor=anchor)

    plain, anchored = [loss(i, 0.0) for i in range(2)], [loss(i, 5.0) for i in range(2)]
    assert torch.allclose(anchored[0], plain[0])
    # the fallen chosen answer: the margin loses 5 x 2 nats
    assert torch.allclose(anchored[1], -F.logsigmoid(torch.tensor(0.1 * (-2.0 + 3.0 - 5.0 * 2.0))))


def test_with_the_anchor_the_gradient_raises_a_fallen_chosen_answer_harder():
    """Plain DPO pulls a fallen chosen answer up by beta*sigmoid(-margin); the anchor multiplies that by 1 + anchor."""
    ref = torch.zeros(1)
    grads = {}
    for anchor in (0.0, 10.0):
        chosen = torch.tensor([-1.0], requires_grad=True)
        loss = preference_loss(
            chosen, torch.tensor([-1.5]), ref, ref, torch.tensor(1.0), beta=0.1, dpo_weight=1.0, sft_weight=0.0, anchor=anchor
        )
        loss.backward()
        grads[anchor] = -chosen.grad.item()  # how hard a descent step raises the chosen log-prob
    assert grads[10.0] > 5 * grads[0.0] > 0


def test_pairs_left_out_of_the_dpo_term_still_count_in_its_mean():
    """train.preference_on=own: a gold-chosen pair trains the SFT term only; the DPO term stays a mean over the batch."""
    chosen, rejected, ref_chosen, ref_rejected, tokens = _batch()
    kept = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    loss = preference_loss(chosen, rejected, ref_chosen, ref_rejected, tokens, beta=0.1, dpo_weight=1.0, sft_weight=1.0, dpo_pairs=kept)
    per_pair = -F.logsigmoid(0.1 * ((chosen - ref_chosen) - (rejected - ref_rejected)))
    assert torch.allclose(loss, (per_pair[0] + per_pair[2]) / 5 - chosen.sum() / tokens)
    loss.backward()
    assert rejected.grad[1] == 0 and rejected.grad[0] > 0  # only the SFT term touches a left-out pair, and not its rejected side

