"""Decode-step attention that reads a context shared by several rows once for all of them (cascade attention).

When a decode batch's rows share the start of their context (a prompt's n samples, a database's problems),
plain attention reads that context's keys and values once per row at every step, each row a
matrix-vector product: on a CPU this is a third of a decode step over Spider's schemas. Here the shared
context is kept once (`SharedContexts`) and each run of rows under it attends to it in one matrix product;
each row's own tokens (the rest of its prompt, its answer so far) stay in the batch's cache as before. The
two parts are joined exactly by their log-sum-exp weights, so the result is plain attention over the
context followed by the row's own tokens.

transformers hands every attention function the keyword arguments given to the model's forward pass, so
the contexts travel as `shared_contexts=` and reach this function in every layer (`AttentionInterface`,
its documented way to plug in attention). Without them (the prefill passes) it is SDPA itself.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "codelutra_shared_context"

ContextKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer, keys and values of shape (key/value heads, tokens, head size)


@dataclass
class SharedContexts:
    """The contexts of a decode step: `contexts[c]` per layer, and `spans`, each (c, first row, end row)."""

    contexts: list[ContextKV]
    spans: list[tuple[int, int, int]]


def shared_context_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, shared_contexts=None, **kwargs):
    """Attention of one new token per row over its shared context (if any) and its own cached tokens."""
    if shared_contexts is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    rows, heads, steps, size = query.shape
    if steps != 1 or dropout:
        raise ValueError("shared-context attention decodes one token per row, in eval mode")
    kv_heads = key.shape[1]
    scaling = size**-0.5 if scaling is None else scaling
    queries = query.view(rows, kv_heads, heads // kv_heads, size)  # GQA: query head h reads key/value head h // groups
    allowed = None if attention_mask is None else attention_mask[:, :, -1:, :]  # SDPA's (rows, 1, 1, own tokens)
    own_lse, own = _attend(queries, key, value, scaling, allowed)

    shared_lse = own_lse.new_full(own_lse.shape, float("-inf"))  # rows under no context: weight 0
    shared = own.new_zeros(own.shape)
    for c, first, last in shared_contexts.spans:
        keys, values = shared_contexts.contexts[c][module.layer_idx]
        group = queries[first:last].transpose(0, 1).reshape(1, kv_heads, -1, size)  # the span's queries per key/value head
        lse, out = _attend(group, keys[None], values[None], scaling)
        shared_lse[first:last] = lse.view(kv_heads, last - first, -1).transpose(0, 1)
        shared[first:last] = out.view(kv_heads, last - first, -1, size).transpose(0, 1)

    top = torch.maximum(own_lse, shared_lse)  # finite: a row always attends to its own newest token
    own_weight, shared_weight = (own_lse - top).exp()[..., None], (shared_lse - top).exp()[..., None]
    output = (own_weight * own + shared_weight * shared) / (own_weight + shared_weight)
    return output.reshape(rows, 1, heads, size), None  # (rows, new tokens, heads, head size), as SDPA's


# torch's fused attention kernel for CPUs, which also returns the log-sum-exp that joining two parts needs.
# An internal op (its outputs are checked against plain attention by tests/test_shared_attention.py); on
# other devices the plain matrix products of `_attend` do the same.
CPU_ATTENTION_KERNEL = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _attend(queries, keys, values, scaling, allowed=None):
    """Softmax attention of 4-D queries over keys and values; returns (log-sum-exp of the scores, output)."""
    if allowed is not None and allowed.dtype == torch.bool:
        allowed = torch.zeros(allowed.shape, dtype=queries.dtype, device=queries.device).masked_fill(~allowed, float("-inf"))
    attend = _attend_cpu if queries.device.type == "cpu" else _attend_plain
    return attend(queries, keys, values, scaling, allowed)


def _attend_cpu(queries, keys, values, scaling, allowed):
    out, lse = CPU_ATTENTION_KERNEL(queries, keys, values, 0.0, False, attn_mask=allowed, scale=scaling)
    return lse, out


def _attend_plain(queries, keys, values, scaling, allowed):
    scores = queries @ keys.transpose(-1, -2) * scaling
    if allowed is not None:
        scores = scores + allowed
    lse = scores.logsumexp(-1)
    return lse, (scores - lse[..., None]).exp() @ values


AttentionInterface.register(NAME, shared_context_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)  # the masks SDPA takes: 4-D prefill masks pass as they are


@contextmanager
def shared_context_attention_on(model):
    """Switch the model to shared-context attention for a sampling call; yields whether it took.

    A model whose attention does not go through `AttentionInterface` keeps its own (transformers warns), and
    the caller must then lay out every row's context in full.
    """
    previous = model.config._attn_implementation
    if previous != "sdpa":
        yield False
        return
    model.set_attn_implementation(NAME)
    try:
        yield model.config._attn_implementation == NAME
    finally:
        model.set_attn_implementation(previous)
