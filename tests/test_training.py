"""Training: the dual loss equals the formula computed by hand, and iteration k's reference is iteration k-1."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from trl.trainer.dpo_trainer import DataCollatorForPreference

from codelutra.candidates import Pair, pair_of_row
from codelutra.config import TrainConfig
from codelutra.models import load_model
from codelutra.training.trainer import build_trainer, contrasted, train_policy

# The paper's loss on whole answers (the hand-computed formula below); the defaults add DPO-Positive's anchor and
# cut rejected answers after their divergence (train.anchor, train.rejected_window), tested on their own at the end.
PAPER = {"anchor": 0.0, "rejected_window": None}
# On a GPU the trainer computes in bf16 (autocast), and these tests compare float32 values at 1e-4.
FLOAT32_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="exact to 1e-4 in float32; a GPU trains in bf16")


def _pairs(n: int = 4) -> list[Pair]:
    return [
        pair_of_row({
            "prompt": [{"role": "user", "content": f"t(a, b)\nQuestion: how many rows have a > {i}?"}],
            "chosen": f"```sql\nSELECT count(*) FROM t WHERE a > {i}\n```",
            "rejected": f"```sql\nSELECT * FROM t{i}",
            "answer_prefix": "```sql\n",
        })
        for i in range(n)
    ]


def _sequence_logps(model, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed completion log-probs per sequence, plus per-token log-probs and the completion mask, by hand."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].bool()
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1), token_logps, mask


def _loss_by_hand(policy, reference, batch, beta: float, lam: float) -> float:
    """L = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) + lambda * NLL of chosen tokens / their count."""
    with torch.no_grad():
        pi, pi_tokens, mask = _sequence_logps(policy, batch)
        ref, _, _ = _sequence_logps(reference, batch)
    pi_c, pi_r = pi.chunk(2)
    ref_c, ref_r = ref.chunk(2)
    dpo = -F.logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))).mean()
    chosen_tokens, chosen_mask = pi_tokens.chunk(2)[0], mask.chunk(2)[0]
    sft = -chosen_tokens[chosen_mask].mean()
    return float(dpo + lam * sft)


def _perturb_adapter(model, seed: int) -> None:
    """Move a fresh adapter off zero, so that policy and reference differ and the DPO term is not log 2."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


def _trainer_loss(trainer) -> tuple[float, dict]:
    """The trainer's loss on its first two rows, and those rows as TRL's plain batch (for the formula by hand)."""
    rows = [trainer.train_dataset[i] for i in range(2)]
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, trainer.data_collator(rows))
    return float(loss), DataCollatorForPreference(pad_token_id=trainer.processing_class.pad_token_id)(rows)


@pytest.fixture(scope="module")
def iteration_1(tiny_model_dir, tmp_path_factory) -> str:
    """A policy trained for one iteration from the tiny base model (so it differs from the base)."""
    cfg = TrainConfig(epochs=2, batch_size=2, learning_rate=5e-2, checkpoint_steps=1000)
    out = tmp_path_factory.mktemp("iter_1")
    return str(train_policy(tiny_model_dir, _pairs(), out, cfg))


def test_iteration_1_policy_differs_from_base(tiny_model_dir, iteration_1):
    base, trained = load_model(tiny_model_dir), load_model(iteration_1)
    diffs = [float((a - b).abs().max()) for a, b in zip(base.parameters(), trained.parameters())]
    assert max(diffs) > 1e-3, "training changed nothing"


@FLOAT32_ONLY
def test_dual_loss_matches_formula_with_previous_iteration_as_reference(tiny_model_dir, iteration_1, tmp_path):
    beta, lam = 0.3, 0.7
    cfg = TrainConfig(**PAPER, beta=beta, sft_weight=lam, batch_size=2)
    trainer = build_trainer(iteration_1, _pairs(), tmp_path, cfg, seed=0)
    _perturb_adapter(trainer.model, seed=1)
    loss, batch = _trainer_loss(trainer)

    policy = trainer.model  # adapter enabled
    expected = _loss_by_hand(policy, load_model(iteration_1), batch, beta, lam)
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)
    with_base_reference = _loss_by_hand(policy, load_model(tiny_model_dir), batch, beta, lam)
    assert abs(loss - with_base_reference) > 1e-3, "the reference must be iteration 1, not the base model"


@FLOAT32_ONLY
def test_the_base_model_as_reference_of_a_later_iteration(tiny_model_dir, iteration_1, tmp_path):
    """train.reference: base. Iteration 2 starts from iteration 1's policy, its DPO term measured against the base."""
    beta, lam = 0.3, 0.7
    cfg = TrainConfig(**PAPER, beta=beta, sft_weight=lam, batch_size=2)
    trainer = build_trainer(iteration_1, _pairs(), tmp_path, cfg, seed=0, reference_path=tiny_model_dir)
    assert trainer.ref_model is None, "the reference model is freed once its log-probs are computed"
    _perturb_adapter(trainer.model, seed=1)
    loss, batch = _trainer_loss(trainer)
    assert loss == pytest.approx(_loss_by_hand(trainer.model, load_model(tiny_model_dir), batch, beta, lam), rel=1e-4, abs=1e-5)
    with_previous_reference = _loss_by_hand(trainer.model, load_model(iteration_1), batch, beta, lam)
    assert abs(loss - with_previous_reference) > 1e-3


@FLOAT32_ONLY
def test_a_continued_adapter_trains_on_from_the_previous_policy(tiny_model_dir, iteration_1, tmp_path):
    """train.lora_adapter: continued. Iteration 2 trains iteration 1's adapter on, on the base model, against
    iteration 1's policy as reference: so its DPO term starts at log 2, and the loss follows the formula."""
    adapter = (tiny_model_dir, str(Path(iteration_1).parent / "adapter"))
    trainer = build_trainer(iteration_1, _pairs(), tmp_path / "dpo", TrainConfig(**PAPER, loss="dpo", batch_size=2), seed=0, adapter=adapter)
    loss, _ = _trainer_loss(trainer)
    assert loss == pytest.approx(math.log(2), abs=1e-5), "at the start the policy is the reference, iteration 1"
    lora_b = [p for name, p in trainer.model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.requires_grad for p in lora_b), "iteration 1's adapter trains on"
    assert max(float(p.abs().max()) for p in lora_b) > 0, "a fresh adapter would start at zero"
    assert trainer.ref_model is None, "the reference model is freed once its log-probs are computed"

    beta, lam = 0.3, 0.7
    trainer = build_trainer(iteration_1, _pairs(), tmp_path / "dual", TrainConfig(**PAPER, beta=beta, sft_weight=lam, batch_size=2), seed=0, adapter=adapter)
    _perturb_adapter(trainer.model, seed=1)
    loss, batch = _trainer_loss(trainer)
    assert loss == pytest.approx(_loss_by_hand(trainer.model, load_model(iteration_1), batch, beta, lam), rel=1e-4, abs=1e-5)


@FLOAT32_ONLY
def test_fresh_adapter_starts_at_log_2(iteration_1, tmp_path):
    """Policy == reference at the start of an iteration, so the DPO term is exactly log 2."""
    trainer = build_trainer(iteration_1, _pairs(), tmp_path, TrainConfig(**PAPER, loss="dpo", batch_size=2), seed=0)
    loss, _ = _trainer_loss(trainer)
    assert loss == pytest.approx(math.log(2), abs=1e-5)


@FLOAT32_ONLY
@pytest.mark.parametrize("loss_kind", ["dpo", "sft"])
def test_ablation_losses_match_formula(iteration_1, tmp_path, loss_kind):
    beta = 0.2
    trainer = build_trainer(iteration_1, _pairs(), tmp_path, TrainConfig(**PAPER, loss=loss_kind, beta=beta, batch_size=2), seed=0)
    _perturb_adapter(trainer.model, seed=2)
    loss, batch = _trainer_loss(trainer)
    reference = load_model(iteration_1)
    full = _loss_by_hand(trainer.model, reference, batch, beta, lam=1.0)
    dpo_only = _loss_by_hand(trainer.model, reference, batch, beta, lam=0.0)
    expected = dpo_only if loss_kind == "dpo" else full - dpo_only
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_full_fine_tuning_trains_and_saves(tiny_model_dir, tmp_path):
    cfg = TrainConfig(lora=False, epochs=1, batch_size=2, learning_rate=1e-2, checkpoint_steps=1000)
    model_dir = train_policy(tiny_model_dir, _pairs(2), tmp_path, cfg)
    assert (model_dir / "config.json").exists()
    assert not (tmp_path / "adapter").exists()
    base, trained = load_model(tiny_model_dir), load_model(str(model_dir))
    assert any(not torch.equal(a, b) for a, b in zip(base.parameters(), trained.parameters()))


@FLOAT32_ONLY
def test_a_rejected_window_cuts_each_rejected_answer_after_its_divergence(iteration_1, tmp_path):
    """train.rejected_window: the rejected side keeps its tokens up to `window` past the first one that differs
    from the chosen side; the loss is still the formula, on the cut answers, with their references computed anew."""
    beta, lam, window = 0.3, 0.7, 2
    whole = build_trainer(iteration_1, _pairs(), tmp_path / "whole", TrainConfig(**PAPER, beta=beta, sft_weight=lam, batch_size=2), seed=0)
    cfg = TrainConfig(beta=beta, sft_weight=lam, batch_size=2, anchor=0.0, rejected_window=window)
    trainer = build_trainer(iteration_1, _pairs(), tmp_path / "cut", cfg, seed=0)
    for full, cut in zip(whole.train_dataset, trainer.train_dataset):
        start = next(i for i, (c, r) in enumerate(zip(full["chosen_ids"], full["rejected_ids"])) if c != r)
        assert cut["rejected_ids"] == full["rejected_ids"][: start + window]
        assert len(cut["rejected_ids"]) < len(full["rejected_ids"]), "the test's rejected answers run on past the window"
        assert cut["chosen_ids"] == full["chosen_ids"]
    _perturb_adapter(trainer.model, seed=1)
    loss, batch = _trainer_loss(trainer)
    assert loss == pytest.approx(_loss_by_hand(trainer.model, load_model(iteration_1), batch, beta, lam), rel=1e-4, abs=1e-5)


@FLOAT32_ONLY
def test_the_anchor_raises_the_loss_where_the_chosen_answer_fell(iteration_1, tmp_path):
    """train.anchor (DPO-Positive) through the packed trainer: equal to plain DPO until a chosen answer falls below
    its reference, higher after."""
    plain = build_trainer(iteration_1, _pairs(), tmp_path / "plain", TrainConfig(**PAPER, loss="dpo", batch_size=2), seed=0)
    anchored_cfg = TrainConfig(loss="dpo", batch_size=2, anchor=20.0, rejected_window=None)
    anchored = build_trainer(iteration_1, _pairs(), tmp_path / "anchored", anchored_cfg, seed=0)
    assert _trainer_loss(anchored)[0] == pytest.approx(_trainer_loss(plain)[0], abs=1e-6) == pytest.approx(math.log(2), abs=1e-5)
    for trainer in (plain, anchored):
        _perturb_adapter(trainer.model, seed=3)
    plain_loss, anchored_loss = _trainer_loss(plain)[0], _trainer_loss(anchored)[0]
    assert anchored_loss > plain_loss + 1e-3, "the perturbed adapter lowers a chosen answer, which the anchor penalises"


@FLOAT32_ONLY
def test_preference_on_own_leaves_gold_chosen_pairs_to_the_sft_term(iteration_1, tmp_path):
    """train.preference_on=own: the loss is the formula less the DPO term of the pairs whose chosen side is gold."""
    pairs = _pairs()
    pairs[0] = dataclasses.replace(pairs[0], chosen_source="gold")
    losses = {}
    for on in ("all", "own"):
        trainer = build_trainer(iteration_1, pairs, tmp_path / on, TrainConfig(**PAPER, batch_size=2, preference_on=on), seed=0)
        _perturb_adapter(trainer.model, seed=4)
        losses[on], batch = _trainer_loss(trainer)
    with torch.no_grad():
        pi, _, _ = _sequence_logps(trainer.model, batch)
        ref, _, _ = _sequence_logps(load_model(iteration_1), batch)
    (pi_c, pi_r), (ref_c, ref_r) = pi.chunk(2), ref.chunk(2)
    gold_pair_term = -F.logsigmoid(0.1 * ((pi_c[0] - ref_c[0]) - (pi_r[0] - ref_r[0])))
    assert float(gold_pair_term) > 0.05
    assert losses["own"] == pytest.approx(losses["all"] - float(gold_pair_term) / 2, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(("on", "expected"), [("own", [0.0, 1.0, 1.0, 1.0]), ("errors", [1.0, 0.0, 1.0, 1.0])])
def test_preference_on_mask_reaches_the_training_batches(iteration_1, tmp_path, on, expected):
    """own: gold-chosen pairs leave the DPO term; errors: pairs whose rejected answer ran and returned a wrong result.

    The mask must survive Trainer's dataloader, which drops every column the trainer does not list (it once did).
    """
    pairs = _pairs()
    pairs[0] = dataclasses.replace(pairs[0], chosen_source="gold")
    pairs[1] = dataclasses.replace(pairs[1], rejected=dataclasses.replace(pairs[1].rejected, verdict="wrong_result"))
    pairs[2] = dataclasses.replace(pairs[2], rejected=dataclasses.replace(pairs[2].rejected, verdict="runtime_error"))
    assert [float(contrasted(p, on)) for p in pairs] == expected
    trainer = build_trainer(iteration_1, pairs, tmp_path, TrainConfig(**PAPER, batch_size=2, preference_on=on), seed=0)
    masks = sorted(float(v) for batch in trainer.get_train_dataloader() for v in batch["dpo_pairs"])
    assert masks == sorted(expected)



@FLOAT32_ONLY
def test_sft_alone_loads_no_reference_and_spares_its_pass(iteration_1, tiny_model_dir, tmp_path, monkeypatch):
    """train.loss: sft reads no reference log-prob: no reference model is loaded, no reference pass runs."""
    import codelutra.models
    import codelutra.training.trainer as trainer_module

    def no_reference_pass(*args, **kwargs):
        raise AssertionError("the reference pass ran for train.loss: sft")

    loaded = []
    real_load = codelutra.models.load_model
    monkeypatch.setattr(trainer_module, "_with_reference_logprobs", no_reference_pass)
    monkeypatch.setattr(codelutra.models, "load_model", lambda path, *a, **kw: loaded.append(path) or real_load(path, *a, **kw))
    cfg = TrainConfig(**PAPER, loss="sft", batch_size=2)
    trainer = build_trainer(iteration_1, _pairs(), tmp_path, cfg, seed=0, reference_path=tiny_model_dir)
    assert loaded == [iteration_1], "only the policy is loaded"
    _perturb_adapter(trainer.model, seed=2)
    loss, batch = _trainer_loss(trainer)
    reference = load_model(tiny_model_dir)  # any reference: the SFT term does not read it
    expected = _loss_by_hand(trainer.model, reference, batch, 0.1, lam=1.0) - _loss_by_hand(trainer.model, reference, batch, 0.1, lam=0.0)
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)
    logged = trainer._metrics["eval"]  # _trainer_loss computes in eval mode
    assert "logps/chosen" in logged and not any(name.startswith("rewards/") for name in logged), "no reference, no rewards"
