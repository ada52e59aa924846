"""Shared-context (cascade) attention: the same result as attention over each row's whole context, used by the
sampler's decode steps where rows share a context, and switched off again after sampling."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from codelutra.generation.prefix_cache import KVBatch
from codelutra.generation.sampler import generate
from codelutra.generation.shared_attention import NAME, SharedContexts, shared_context_attention
from codelutra.generation.types import SamplingParams
from codelutra.models import load_model, load_tokenizer
from tests.test_sampler import SAME_SCHEMA, UNRELATED, _assert_same_answers


class _Layer:  # what the attention function reads of an attention module
    layer_idx = 1
    num_key_value_groups = 2
    is_causal = True


def test_equals_sdpa_over_each_rows_whole_context():
    """Rows 0-1 under one context, row 2 under none, rows 3-4 under another; own tokens left-padded; GQA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    rows, kv_heads, heads, size, own_width = 5, 2, 4, 8, 6
    lengths = {0: 7, 1: 4}  # context -> tokens
    contexts = [[(torch.randn(kv_heads, n, size), torch.randn(kv_heads, n, size)) for _layer in range(2)] for n in lengths.values()]
    row_context = [0, 0, -1, 1, 1]
    own_lengths = [6, 3, 1, 2, 5]
    query = torch.randn(rows, heads, 1, size)
    keys, values = torch.randn(rows, kv_heads, own_width, size), torch.randn(rows, kv_heads, own_width, size)
    allowed = torch.zeros(rows, 1, 1, own_width, dtype=torch.bool)
    for r, n in enumerate(own_lengths):
        allowed[r, ..., own_width - n :] = True
    shared = SharedContexts(contexts, [(0, 0, 2), (1, 3, 5)])
    got, _ = shared_context_attention(_Layer, query, keys, values, allowed, scaling=0.3, shared_contexts=shared)
    for r in range(rows):
        c = row_context[r]
        context_keys, context_values = contexts[c][1] if c >= 0 else (keys[r, :, :0], values[r, :, :0])
        full_keys = torch.cat([context_keys, keys[r]], dim=1)[None]
        full_values = torch.cat([context_values, values[r]], dim=1)[None]
        mask = torch.cat([torch.ones(context_keys.shape[1], dtype=torch.bool), allowed[r, 0, 0]])[None, None, None]
        expected, _ = sdpa_attention_forward(_Layer, query[r : r + 1], full_keys, full_values, mask, scaling=0.3)
        torch.testing.assert_close(got[r : r + 1], expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="one token per row"):
        shared_context_attention(_Layer, torch.randn(rows, heads, 2, size), keys, values, None, shared_contexts=shared)


def test_the_cpu_kernel_and_the_plain_products_agree():
    """The fused CPU kernel is an internal torch op (`CPU_ATTENTION_KERNEL`): pinned here to the plain formula."""
    from codelutra.generation import shared_attention

    assert shared_attention.CPU_ATTENTION_KERNEL._qualified_op_name == "aten::_scaled_dot_product_flash_attention_for_cpu"
    torch.manual_seed(1)
    queries, keys, values = torch.randn(3, 2, 4, 8), torch.randn(3, 2, 9, 8), torch.randn(3, 2, 9, 8)
    mask = torch.zeros(3, 1, 1, 9).masked_fill(torch.arange(9) < torch.tensor([0, 4, 8])[:, None, None, None], float("-inf"))
    for allowed in (None, mask):
        fused = shared_attention._attend_cpu(queries, keys, values, 0.35, allowed)
        plain = shared_attention._attend_plain(queries, keys, values, 0.35, allowed)
        for a, b in zip(fused, plain, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_n_1_rows_share_the_ancestor_that_spares_the_most_reads():
    """Four problems of one schema, two of which share a longer question start: all four share the schema."""
    from codelutra.generation.prefix_cache import _shared_contexts, plan_prefix_tree

    template, schema, start = list(range(100, 120)), list(range(200, 300)), list(range(300, 340))
    prompts = [template + schema + start + [1], template + schema + start + [2], template + schema + [3], template + schema + [4], [999] * 50]
    order, leaves = plan_prefix_tree(prompts)
    chosen = _shared_contexts([leaves[i] for i in order], repeats=1)
    schema_node = leaves[2].parent
    assert schema_node.tokens == template + schema and leaves[0].parent.tokens == start
    assert chosen == [schema_node] * 4 + [None], "the schema (3 x 120 reads spared) over the question start (1 x 160)"
    assert _shared_contexts(leaves, repeats=3) == leaves, "n > 1: each prompt's samples share the whole prompt"


def _spans_seen(monkeypatch) -> list[list[tuple[int, int, int]]]:
    seen, real_forward = [], KVBatch.forward
    monkeypatch.setattr(KVBatch, "forward", lambda self, model, tokens: seen.append(list(self._spans)) or real_forward(self, model, tokens))
    return seen


def test_decode_steps_read_shared_contexts_then_the_model_is_restored(tiny_model_dir, monkeypatch):
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    seen = _spans_seen(monkeypatch)
    generate(model, tokenizer, SAME_SCHEMA, answer_prefix="```sql\n", params=SamplingParams(max_new_tokens=3, batch_size=32))
    assert seen[0] == [(0, 0, len(SAME_SCHEMA))], "n = 1: one database's problems share its schema's context"
    seen.clear()
    generate(model, tokenizer, SAME_SCHEMA[:2] + UNRELATED, answer_prefix="```sql\n", params=SamplingParams(n=3, temperature=1.0, max_new_tokens=3, batch_size=32))
    assert seen[0] == [(c, 3 * c, 3 * c + 3) for c in range(5)], "n = 3: each prompt's samples share the prompt"
    assert model.config._attn_implementation == "sdpa"


def test_a_model_whose_attention_stays_eager_holds_whole_contexts(tiny_model_dir, monkeypatch):
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    tokenizer = load_tokenizer(tiny_model_dir)
    seen = _spans_seen(monkeypatch)
    params = SamplingParams(max_new_tokens=4, batch_size=8, keep_logprobs=True)
    shared = generate(eager, tokenizer, SAME_SCHEMA, answer_prefix="```sql\n", params=params)
    plain = generate(eager, tokenizer, SAME_SCHEMA, answer_prefix="```sql\n", params=params, shared_prefix=False)
    _assert_same_answers(shared, plain)
    assert seen and not any(seen) and eager.config._attn_implementation == "eager" != NAME
