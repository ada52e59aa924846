"""Reference log-probs kept at sampling time equal a fresh reference forward pass, and training uses them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference

from codelutra.candidates import pair_of_row, pair_row
from codelutra.config import PairConfig, TrainConfig
from codelutra.generation.sampler import generate
from codelutra.generation.types import SamplingParams
from codelutra.models import load_model, load_tokenizer
from codelutra.training.pairs import build_pairs
from codelutra.training.trainer import build_trainer

# On a GPU the trainer computes in bf16 (autocast), and these tests compare float32 values at 1e-4.
FLOAT32_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="exact to 1e-4 in float32; a GPU trains in bf16")

PREFIX = "```sql\n"
PROMPTS = [[{"role": "user", "content": f"t(a, b)\nQuestion: how many rows have a > {i}?"}] for i in range(6)]


@pytest.fixture(scope="module")
def stopping_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny random model, made to end its answer (end-of-turn) after a few tokens, as a real model does.

    Every hidden state gets a large positive first coordinate, and end-of-turn's output row a weight on it.
    """
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight  # tied: also the output rows
        embeddings[:, 0] = 4.0
        embeddings[tokenizer.eos_token_id, 0] = 4.75
    path = tmp_path_factory.mktemp("stopping_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module", params=[True, False], ids=["shared-prefix", "plain"])
def sampled(stopping_model_dir, request):
    """Samples from both sampler paths (`generate`'s shared_prefix), so that both are checked against TRL."""
    model, tokenizer = load_model(stopping_model_dir), load_tokenizer(stopping_model_dir)
    return generate(
        model, tokenizer, PROMPTS, answer_prefix=PREFIX,
        params=SamplingParams(n=3, temperature=1.0, max_new_tokens=3, batch_size=6, seed=0, keep_logprobs=True),
        shared_prefix=request.param,
    )


def _pairs(sampled) -> list[dict]:
    """The first sample of each prompt counts as correct and the others as wrong; the last prompt falls back to gold.

    As pairs.jsonl rows: the tests below change kept values in them, as a run's file could hold.
    """
    pairs = []
    for i, (prompt, row) in enumerate(zip(PROMPTS, sampled)):
        verdicts = ["wrong_result"] * len(row) if i == len(PROMPTS) - 1 else ["correct"] + ["wrong_result"] * (len(row) - 1)
        judged = [replace(s, problem_id=f"p{i}", verdict=v) for s, v in zip(row, verdicts)]
        gold = f"{PREFIX}SELECT count(*) FROM t WHERE a > {i}\n```"
        pairs += [pair_row(p) for p in build_pairs(prompt, judged, gold, answer_prefix=PREFIX, cfg=PairConfig(max_per_problem=2))]
    return pairs


def _trainer(model_dir, pairs: list[dict], out, cfg: TrainConfig, **kwargs):
    return build_trainer(model_dir, [pair_of_row(p) for p in pairs], out, cfg, seed=0, **kwargs)


def test_samples_keep_tokens_and_logprobs(sampled, stopping_model_dir):
    tokenizer = load_tokenizer(stopping_model_dir)
    flat = [s for row in sampled for s in row]
    ended = [s for s in flat if s.logprob is not None]
    assert any(len(s.token_ids) < 3 for s in ended), "the model should end some answers by itself"
    assert all(len(s.token_ids) <= 3 for s in flat), "answers are cut at max_new_tokens"
    assert any(len(s.token_ids) == 3 for s in ended), "an answer cut at max_new_tokens has its end-of-turn scored too"
    for s in flat:
        assert s.text == PREFIX + tokenizer.decode(s.token_ids, skip_special_tokens=True)
        assert tokenizer.eos_token_id not in s.token_ids
    assert all(s.logprob < 0 for s in ended)


@FLOAT32_ONLY
def test_kept_logprobs_equal_a_fresh_reference_pass(sampled, stopping_model_dir, tmp_path):
    """The values training reads from the batch are the sampler's; TRL's own reference pass gives the same."""
    pairs = _pairs(sampled)
    kept = {(p["id"], side): p[f"{side}_sample"]["logprob"] for p in pairs for side in ("chosen", "rejected") if p[f"{side}_sample"] and p[f"{side}_sample"]["logprob"] is not None}
    assert len(kept) >= 3, "too few kept log-probs for a meaningful test"
    assert any(p["chosen_source"] == "gold" for p in pairs), "gold answers (not sampled) must be covered too"

    trainer = _trainer(stopping_model_dir, pairs, tmp_path, TrainConfig(batch_size=2, rejected_window=None))
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)  # the packed batch training reads
    plain = DataCollatorForPreference(pad_token_id=trainer.processing_class.pad_token_id)(rows)
    fresh_chosen, fresh_rejected = trainer.compute_ref_log_probs(trainer.model, plain)  # adapter disabled: the reference
    torch.testing.assert_close(batch["ref_chosen_logps"], fresh_chosen.float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(batch["ref_rejected_logps"], fresh_rejected.float(), rtol=1e-4, atol=1e-4)


def test_a_wrong_kept_value_is_not_recomputed(sampled, stopping_model_dir, tmp_path):
    """Training trusts a kept value whose tokens match: proof that the forward pass is skipped for it."""
    pairs = _pairs(sampled)
    first = _trainer(stopping_model_dir, pairs, tmp_path, TrainConfig(batch_size=2, rejected_window=None)).train_dataset
    # a pair whose rejected value in the batch is exactly the kept one (not recomputed), with tokens to cut
    target = next(
        p
        for p, used in zip(pairs, first["ref_rejected_logps"])
        if p["rejected_sample"] and p["rejected_sample"]["token_ids"] and used == p["rejected_sample"]["logprob"]
    )
    target["rejected_sample"] = {**target["rejected_sample"], "logprob": -1234.5}
    trainer = _trainer(stopping_model_dir, pairs, tmp_path, TrainConfig(batch_size=2, rejected_window=None))
    assert -1234.5 in trainer.train_dataset["ref_rejected_logps"]
    target["rejected_sample"] = {**target["rejected_sample"], "token_ids": target["rejected_sample"]["token_ids"][:-1]}
    trainer = _trainer(stopping_model_dir, pairs, tmp_path, TrainConfig(batch_size=2, rejected_window=None))
    assert -1234.5 not in trainer.train_dataset["ref_rejected_logps"], "tokens that differ from TRL's must be recomputed"


@FLOAT32_ONLY
@pytest.mark.parametrize("packing", [True, False], ids=["packed", "plain"])
def test_a_base_model_reference_uses_no_kept_logprob(sampled, stopping_model_dir, tiny_model_dir, tmp_path, packing):
    """train.reference: base. The sampler scored the answers under the policy, so every value is the base model's."""
    pairs = _pairs(sampled)
    cfg = TrainConfig(batch_size=2, packing=packing, anchor=50.0 if packing else 0.0, rejected_window=None)
    trainer = _trainer(stopping_model_dir, pairs, tmp_path, cfg, reference_path=tiny_model_dir)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    plain = DataCollatorForPreference(pad_token_id=trainer.processing_class.pad_token_id)(rows)
    base = load_model(tiny_model_dir)
    with torch.no_grad():
        logits = base(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits[:, :-1].float()
    token_logps = logits.log_softmax(-1).gather(-1, plain["input_ids"][:, 1:, None])[..., 0]
    expected_chosen, expected_rejected = (token_logps * plain["completion_mask"][:, 1:]).sum(-1).chunk(2)
    torch.testing.assert_close(list(trainer.train_dataset["ref_chosen_logps"]), expected_chosen.tolist(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(list(trainer.train_dataset["ref_rejected_logps"]), expected_rejected.tolist(), rtol=1e-4, atol=1e-4)
    kept = [p["rejected_sample"]["logprob"] for p in pairs if p["rejected_sample"] and p["rejected_sample"]["logprob"] is not None]
    assert kept and not set(kept) & set(trainer.train_dataset["ref_rejected_logps"]), "a value kept from sampling was used"
