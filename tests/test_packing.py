"""Prefix-tree packing computes what TRL computes: the same answer log-probs, loss and gradients (float32, 1e-4)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from codelutra.candidates import Pair, pair_of_row
from codelutra.config import TrainConfig
from codelutra.models import load_model
from codelutra.training.packing import PrefixGroupedSampler, answer_logps, pack_pairs
from codelutra.training.trainer import build_trainer, train_policy
from codelutra.training.trl_internals import score_completion_tokens_only

# On a GPU the trainer computes in bf16 (autocast), and these tests compare float32 values at 1e-4.
FLOAT32_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="exact to 1e-4 in float32; a GPU trains in bf16")

SCHEMA = "CREATE TABLE singer (id INT, name TEXT, age INT);\nCREATE TABLE concert (id INT, singer_id INT, year INT);"


def _sql_pairs() -> list[Pair]:
    """Two problems on one schema, two pairs each; the first problem's pairs share their chosen answer."""
    pairs = []
    for problem, question, chosen, rejected in (
        ("p0", "How many singers are there?", "SELECT count(*) FROM singer", ["SELECT * FROM singer", "SELECT count(*) FROM concert"]),
        ("p1", "Name the oldest singer.", "SELECT name FROM singer ORDER BY age DESC LIMIT 1", ["SELECT name FROM singer", "SELECT max(age) FROM singer"]),
    ):
        for i, wrong in enumerate(rejected):
            pairs.append({
                "id": problem,
                "prompt": [{"role": "user", "content": f"{SCHEMA}\nQuestion: {question}"}],
                "chosen": f"```sql\n{chosen if problem == 'p0' else chosen + ' ' * i}\n```",
                "rejected": f"```sql\n{wrong}\n```",
                "answer_prefix": "```sql\n",
            })
    return [pair_of_row(p) for p in pairs]


def _python_pairs() -> list[Pair]:
    """Prompts that share nothing after the chat template's header (as Python task sets' prompts do)."""
    rows = [
        {"prompt": [{"role": "user", "content": "Write f(x) returning x squared."}], "chosen": "def f(x):\n    return x * x", "rejected": "def f(x):\n    return x + x"},
        {"prompt": [{"role": "user", "content": "Reverse a list xs in place, please."}], "chosen": "xs.reverse()", "rejected": "xs = xs[::-1]"},
    ]
    return [pair_of_row(row) for row in rows]


def _perturb(model, seed: int) -> None:
    """Move the trainable weights off their start, so that policy and reference differ (DPO term not log 2)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and ("lora_B" in name or "lora" not in name):
                p.add_(torch.randn_like(p) * (0.5 if "lora_B" in name else 0.02))


def _loss_and_grads(trainer, rows) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, trainer.data_collator(rows))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def _trl_answer_logps(trainer, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's own separate-sequence log-probs: its collator's batch through its fused LM head."""
    batch = trainer.data_collator(rows)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    model_inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    logps = trainer.model(**model_inputs, labels=labels, fused_lm_head=True, use_cache=False).log_probs.sum(1)
    return logps.chunk(2)


@FLOAT32_ONLY
@pytest.mark.parametrize(
    ("pairs", "cfg"),
    [
        (_sql_pairs(), {}),
        (_sql_pairs(), {"loss": "dpo"}),
        (_sql_pairs(), {"loss": "sft"}),
        (_sql_pairs(), {"lora": False}),
        (_sql_pairs(), {"max_length": 75}),  # prompts are 70-71 tokens: cuts most answers
        (_python_pairs(), {"beta": 0.5, "sft_weight": 0.3}),
    ],
    ids=["dual", "dpo", "sft", "full-fine-tuning", "truncated", "python"],
)
def test_packed_logps_loss_and_gradients_equal_trl(tiny_model_dir, tmp_path, pairs, cfg):
    # TRL's own batches compute TRL's loss: the anchor (DPO-Positive) is the packed trainer's alone
    cfg = {"batch_size": len(pairs), "beta": 0.3, "sft_weight": 0.7, "anchor": 0.0, **cfg}
    packed = build_trainer(tiny_model_dir, pairs, tmp_path / "packed", TrainConfig(**cfg), seed=0)
    plain = build_trainer(tiny_model_dir, pairs, tmp_path / "plain", TrainConfig(packing=False, **cfg), seed=0)
    for trainer in (packed, plain):
        _perturb(trainer.model, seed=3)
    rows = [packed.train_dataset[i] for i in range(len(pairs))]
    plain_rows = [plain.train_dataset[i] for i in range(len(pairs))]
    reference = ("ref_chosen_logps", "ref_rejected_logps")  # the packed trainer's reference pass is packed too
    assert [{k: v for k, v in r.items() if k not in reference} for r in rows] == [{k: v for k, v in r.items() if k not in reference} for r in plain_rows]
    for key in reference:
        torch.testing.assert_close(torch.tensor([r[key] for r in rows]), torch.tensor([r[key] for r in plain_rows]), rtol=1e-4, atol=1e-4)

    batch = packed.data_collator(rows)
    if "max_length" not in cfg:
        assert batch["input_ids"].numel() < sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)
    with torch.no_grad():
        expected = _trl_answer_logps(plain, rows)
        got = answer_logps(packed.model, batch)
    for side, a, b in zip(("chosen", "rejected"), got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, side=side: f"{side} log-probs: {m}")

    loss, grads = _loss_and_grads(packed, rows)
    trl_loss, trl_grads = _loss_and_grads(plain, rows)
    torch.testing.assert_close(loss, trl_loss, rtol=1e-4, atol=1e-5)
    assert grads.keys() == trl_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], trl_grads[name], rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"gradient of {name}: {m}")
    assert max(float(g.abs().max()) for g in grads.values()) > 1e-4, "no gradient: the comparison would be empty"


def test_the_tree_shares_the_prefix_and_duplicate_answers(tiny_model_dir):
    """The schema is in the packed sequence once, and an answer that two pairs share is computed once."""
    rows = [
        {"prompt_ids": [1, 2, 3, 4, 5], "chosen_ids": [6, 7, 2], "rejected_ids": [8, 2]},
        {"prompt_ids": [1, 2, 3, 4, 5], "chosen_ids": [6, 7, 2], "rejected_ids": [9, 9, 2]},
        {"prompt_ids": [1, 2, 3, 10], "chosen_ids": [11, 2], "rejected_ids": [12, 2]},
    ]
    batch = pack_pairs(rows, max_length=None)
    # shared [1, 2, 3]; rests [4] and []; answers: [5,6,7] [5,8] [5,9,9] [10,11] [10,12]
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 5, 8, 5, 9, 9, 10, 11, 10, 12]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 4, 5, 4, 5, 6, 3, 4, 3, 4]]
    assert batch["chosen_answer"].tolist() == [0, 0, 3] and batch["rejected_answer"].tolist() == [1, 2, 4]
    mask = batch["attention_mask"][0, 0]
    assert mask[7].tolist() == [1, 1, 1, 1, 0, 0, 0, 1] + [0] * 8  # rejected 1 sees its prompt, not chosen 1
    assert mask[12, :4].tolist() == [1, 1, 1, 0]  # problem 2 does not see problem 1's rest
    cut = pack_pairs(rows, max_length=5)  # every answer cut away entirely: log-prob 0, as TRL's truncation gives
    assert cut["chosen_answer"].tolist()[:2] == [-1, -1] and cut["answer_lengths"].tolist() == [1, 1]


@FLOAT32_ONLY
def test_nothing_shared_and_truncated_answers_match_separate_sequences(tiny_model_dir):
    """Prompts without a common prefix, and answers max_length cuts, against the model run on each sequence."""
    model = load_model(tiny_model_dir).eval()
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model)
    score_completion_tokens_only()
    rows = [
        {"prompt_ids": [11, 12, 13], "chosen_ids": [14, 15, 2], "rejected_ids": [16, 2]},
        {"prompt_ids": [21, 22], "chosen_ids": [23, 2], "rejected_ids": [24, 25, 26, 2]},
    ]
    for max_length in (None, 5):
        with torch.no_grad():
            chosen, rejected = answer_logps(model, pack_pairs(rows, max_length))
            for row, c, r in zip(rows, chosen, rejected):
                for side, got in (("chosen_ids", c), ("rejected_ids", r)):
                    sequence = (row["prompt_ids"] + row[side])[:max_length]
                    logits = model(input_ids=torch.tensor([sequence])).logits[0, :-1]
                    token_logps = torch.log_softmax(logits, -1).gather(-1, torch.tensor(sequence[1:])[:, None])[:, 0]
                    expected = token_logps[len(row["prompt_ids"]) - 1 :].sum()
                    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_steps_group_shared_prefixes_and_do_not_depend_on_processes():
    prompts = [[1, 2, 3, 4], [9, 9], [1, 2, 3, 4], [1, 2, 5], [9, 9, 1], [1, 2, 5], [9, 9]]
    sampler = PrefixGroupedSampler(prompts, [3, 1, 2, 2, 2, 2, 1], step_size=2, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(len(prompts)))
    steps = [order[i : i + 2] for i in range(0, 6, 2)]
    assert all(prompts[a] == prompts[b] for a, b in steps), "each step's pairs share their prompt here"
    assert order[-1] == 4, "the last, smaller step stays last"
    assert order == list(PrefixGroupedSampler(prompts, [3, 1, 2, 2, 2, 2, 1], step_size=2, seed=0)), "seeded: resume sees it again"
    sampler.set_epoch(1)
    assert sorted(sampler) == sorted(order)


def test_an_interrupted_training_resumes_to_the_same_adapter(tiny_model_dir, tmp_path):
    pairs = _sql_pairs() * 2
    cfg = {"batch_size": 2, "learning_rate": 5e-2, "lr_scheduler": "constant", "lora_r": 4, "checkpoint_steps": 2}
    straight = train_policy(tiny_model_dir, pairs, tmp_path / "straight", TrainConfig(max_steps=4, **cfg)).parent

    resumed = tmp_path / "resumed"
    build_trainer(tiny_model_dir, pairs, resumed, TrainConfig(max_steps=2, **cfg)).train()  # stopped after 2 steps
    assert (resumed / "checkpoints" / "checkpoint-2").is_dir()
    train_policy(tiny_model_dir, pairs, resumed, TrainConfig(max_steps=4, **cfg))
    a, b = (load_file(out / "adapter" / "adapter_model.safetensors") for out in (straight, resumed))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_reference_trees_hold_a_database_together_and_unrelated_prompts_apart():
    from codelutra.training.packed_trainer import _trees_of

    schema = list(range(100, 400))  # 300 shared tokens
    same_db = [(schema + [i], [7] * 30) for i in range(20)]  # each adds 31 tokens after the first
    groups = _trees_of(same_db, 1024)
    assert sorted(i for g in groups for i in g) == list(range(20))
    assert len(groups) == 1, "one database's problems share their schema: one tree"
    unrelated = [([1000 * k + t for t in range(600)], [7] * 30) for k in range(1, 5)]  # 630 tokens each, nothing shared
    assert [len(g) for g in _trees_of(unrelated, 1300)] == [1, 1, 1, 1], "sharing nothing, a joint tree saves nothing"
    system = list(range(20))  # prompts that share only a system prompt still go several to a tree, within the budget
    spider_like = [(system + [1000 * k + t for t in range(300)], [7] * 30) for k in range(1, 7)]
    assert [len(g) for g in _trees_of(spider_like, 1024)] == [3, 3]
    other_schema = list(range(500, 800))
    two_dbs = same_db[:10] + [(other_schema + [i], [7] * 30) for i in range(10)]
    groups = _trees_of(two_dbs, 10_000)
    assert [sorted(g) for g in groups] == [list(range(10)), list(range(10, 20))], "a new database starts a new tree"
    assert _trees_of([], 1024) == []
