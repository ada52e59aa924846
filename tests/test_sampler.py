"""Generation: answers start with the answer prefix, stop after the closing fence, come back in order."""

import pytest
import torch

from codelutra.generation.sampler import StopAfterClosingFence, generate
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
    out = generate(model, tokenizer, prompts, n=2, temperature=1.0, max_new_tokens=5, batch_size=4, answer_prefix="```sql\n")
    assert [len(o) for o in out] == [2, 2, 2]
    assert all(c.startswith("```sql\n") for o in out for c in o)
    greedy = generate(model, tokenizer, prompts, max_new_tokens=5, batch_size=2)
    assert greedy == [generate(model, tokenizer, [p], max_new_tokens=5)[0] for p in prompts]  # batching changes nothing
    with pytest.raises(ValueError):
        generate(model, tokenizer, prompts, n=2, temperature=0.0)
