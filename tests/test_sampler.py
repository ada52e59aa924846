"""Generation: answers start with the answer prefix, stop after the closing fence, come back in order."""

import pytest
import torch

from codelutra.generation.sampler import StopAfterClosingFence, generate
from codelutra.generation.types import SamplingParams
from codelutra.models import load_model, load_tokenizer


def test_stop_after_closing_fence(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    prompt = tokenizer("<|im_start|>assistant\n```sql\n", add_special_tokens=False).input_ids
    stop = StopAfterClosingFence(tokenizer, len(prompt), fences_in_prefix=1)

    def ids(answer: str) -> torch.Tensor:
        return torch.tensor([prompt + tokenizer(answer, add_special_tokens=False).input_ids])

    assert not stop(ids("SELECT"), None).item()
    assert not stop(ids("SELECT count(*) FROM t"), None).item()
    assert stop(ids("SELECT count(*) FROM t\n```"), None).item()
    assert stop(ids("SELECT 1\n```\n"), None).item()
    free = StopAfterClosingFence(tokenizer, len(prompt), fences_in_prefix=0)
    assert not free(ids("SELECT 1\n```"), None).item()


def test_generate_keeps_order_and_prefix(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    prompts = [[{"role": "user", "content": "q" * k}] for k in (30, 1, 12)]
    sampled = SamplingParams(n=2, temperature=1.0, max_new_tokens=5, batch_size=4)
    out = generate(model, tokenizer, prompts, params=sampled, answer_prefix="```sql\n")
    assert [len(o) for o in out] == [2, 2, 2]
    assert all(c.text.startswith("```sql\n") for o in out for c in o)
    greedy = generate(model, tokenizer, prompts, params=SamplingParams(max_new_tokens=5, batch_size=2))
    one_by_one = [generate(model, tokenizer, [p], params=SamplingParams(max_new_tokens=5))[0] for p in prompts]
    assert greedy == one_by_one  # batching changes nothing
    with pytest.raises(ValueError):
        SamplingParams(n=2, temperature=0.0)


def test_truncated_marks_answers_cut_by_the_budget_only(tiny_model_dir):
    """The random tiny model never closes its block: every answer runs to the budget and is marked cut."""
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    prompts = [[{"role": "user", "content": "q" * k}] for k in (3, 9)]
    for keep in (False, True):
        out = generate(model, tokenizer, prompts, answer_prefix="```sql\n", params=SamplingParams(max_new_tokens=4, keep_logprobs=keep))
        assert all(c.truncated and c.text.count("```") == 1 for [c] in out)
        assert all((c.token_ids is not None) == keep and (len(c.token_ids) == 4 if keep else True) for [c] in out)


def test_system_prompt_setting():
    from codelutra.generation.types import with_system_prompt

    user = [{"role": "user", "content": "q"}]
    assert with_system_prompt(user, "default") == user
    assert with_system_prompt(user, "none") == [{"role": "system", "content": ""}, *user]
    assert with_system_prompt(user, "Answer in SQL.") == [{"role": "system", "content": "Answer in SQL."}, *user]
    own = [{"role": "system", "content": "mine"}, *user]
    assert with_system_prompt(own, "none") == own  # a task's own system turn is kept
