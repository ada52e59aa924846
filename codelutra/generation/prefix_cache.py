"""Shared-prefix prefill: the tokens that prompts share are run through the model once, their KV cache reused.

A call's prompts share most of their tokens: the chat template's system turn with every other prompt, the
database schema with every problem of that database. `plan_prefix_tree` finds those shared runs at the
token level (a compressed prefix tree over the prompts' token ids) and `PrefixCaches` prefills each run
once, on top of its parent's cache. A prompt's own tokens after its deepest shared run (its suffix) are
prefilled once for all its samples, and the rows of a decode batch live in one `KVBatch`.

Rows of a batch hold contexts of different lengths, so a row's cache is laid out as
[left padding][its context][padding][its suffix][its generated tokens], with an attention mask that hides
the padding and position ids that count only the row's own tokens: the model sees exactly the tokens, and
the positions, that a plain forward pass over the row's prompt would. Padded keys and values are zeros and
masked, so they get exactly zero attention weight. Only caches made of plain full-attention layers
(`DynamicLayer`) can be laid out this way: `supports_shared_prefix` says whether a model's are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# A shared run becomes a node of its own (one forward pass of batch 1) only when it spares at least this many
# token computations: a forward pass costs about as much as one decode step whatever its length.
MIN_SAVED_TOKENS = 64


@dataclass(eq=False)
class Node:
    """A run of tokens that several prompts share, after the runs of its ancestors; prefilled once."""

    tokens: list[int]
    start: int  # the position of its first token (the length of its ancestors' runs together)
    parent: Node | None
    users: int = 0  # prompts below it not yet admitted to a batch: its cache is freed when none are left
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = field(default=None, repr=False)  # per layer, batch 1

    def chain(self) -> list[Node]:
        """Its ancestors and itself, root first."""
        nodes, node = [], self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


@dataclass
class PromptPlan:
    node: Node | None  # its deepest shared run (None: it shares nothing worth a node)
    suffix: list[int]  # its tokens after that run: at least one, so that its last one gives the first logits


def plan_prefix_tree(prompts: list[list[int]], min_saved_tokens: int = MIN_SAVED_TOKENS) -> tuple[list[int], list[PromptPlan]]:
    """The order to sample the prompts in (prompts that share runs next to each other) and each prompt's plan.

    Walks the compressed prefix tree of the token sequences: a group's longest common prefix beyond its
    parent's becomes a node when it spares at least `min_saved_tokens` token computations; the group then
    splits by its next token. Iterative, as a tree over 1,000-token prompts is deeper than Python's stack.
    """
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    plans: list[PromptPlan | None] = [None] * len(prompts)
    stack = [(order, 0, None)]  # (prompts of a group in sorted order, tokens covered by its ancestors, parent)
    while stack:
        members, depth, parent = stack.pop()
        if len(members) == 1:
            [i] = members
            plans[i] = PromptPlan(parent, prompts[i][parent.start + len(parent.tokens) if parent else 0 :])
            continue
        first, last = prompts[members[0]], prompts[members[-1]]  # sorted: their common prefix is everyone's
        cap = min(len(prompts[i]) for i in members) - 1  # every prompt keeps a suffix of one token at least
        shared = next((t for t in range(depth, cap) if first[t] != last[t]), cap)
        if (len(members) - 1) * (shared - depth) >= min_saved_tokens:
            parent = Node(first[depth:shared], depth, parent)
            depth = shared
        groups: dict[int, list[int]] = {}
        for i in members:
            groups.setdefault(prompts[i][shared], []).append(i)
        if len(groups) == 1:  # identical up to the cap (a prompt repeated): each is a leaf under `parent`
            stack += [([i], depth, parent) for i in members]
        else:
            stack += [(group, depth, parent) for group in reversed(groups.values())]
    ordered = [plans[i] for i in order]
    for plan in ordered:
        for node in plan.node.chain() if plan.node else ():
            node.users += 1
    return order, plans


def supports_shared_prefix(model) -> bool:
    """Whether the model's cache is all plain full-attention layers, which `KVBatch` can pad and join."""
    cache = DynamicCache(config=model.config)
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


class PrefixCaches:
    """Prefills each shared run once, on its parent's cache, and keeps it until its last prompt is admitted."""

    def __init__(self, model):
        self.model = model

    def kv(self, node: Node) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if node.kv is None:
            context = _concat_kv([self.kv(n) for n in node.parent.chain()]) if node.parent else None
            cache = DynamicCache(ddp_cache_data=context, config=self.model.config)
            ids = torch.tensor([node.tokens], device=self.model.device)
            positions = torch.arange(node.start, node.start + len(node.tokens), device=self.model.device)[None]
            self.model(input_ids=ids, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
            node.kv = [(layer.keys[:, :, -len(node.tokens) :].clone(), layer.values[:, :, -len(node.tokens) :].clone()) for layer in cache.layers]
        return node.kv

    def context(self, node: Node | None) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The cache of every run from the root to `node`, batch 1 (None for no node)."""
        return _concat_kv([self.kv(n) for n in node.chain()]) if node else None

    def admitted(self, node: Node | None) -> None:
        """One prompt below `node` has its context copied into a batch: free the runs no prompt needs now."""
        for n in node.chain() if node else ():
            n.users -= 1
            if n.users == 0:
                n.kv = None


def _concat_kv(runs: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if len(runs) == 1:
        return runs[0]
    return [(torch.cat([r[i][0] for r in runs], dim=2), torch.cat([r[i][1] for r in runs], dim=2)) for i in range(len(runs[0]))]


class KVBatch:
    """The rows being decoded together: their cache, attention mask and next positions, kept in step.

    `mask` is (rows, cache columns): which columns each row attends to; `positions` is each row's next
    position (its own tokens so far); `logits` are each row's raw next-token logits (float32).
    """

    def __init__(self, cache: DynamicCache, mask: torch.Tensor, positions: torch.Tensor, logits: torch.Tensor):
        self.cache, self.mask, self.positions, self.logits = cache, mask, positions, logits

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @classmethod
    def prefill(cls, model, caches: PrefixCaches, plans: list[PromptPlan], repeats: int) -> KVBatch:
        """Prefill each prompt's suffix once after its shared context, then repeat each row `repeats` times."""
        lengths = [p.node.start + len(p.node.tokens) if p.node else 0 for p in plans]
        width, suffix_width = max(lengths), max(len(p.suffix) for p in plans)
        device, rows = model.device, len(plans)
        mask = torch.zeros(rows, width + suffix_width, dtype=torch.long, device=device)
        ids = torch.zeros(rows, suffix_width, dtype=torch.long, device=device)  # padding: any token, masked
        positions = torch.zeros(rows, suffix_width, dtype=torch.long, device=device)
        for r, (plan, length) in enumerate(zip(plans, lengths)):
            pad = suffix_width - len(plan.suffix)
            mask[r, width - length : width] = 1
            mask[r, width + pad :] = 1
            ids[r, pad:] = torch.tensor(plan.suffix, device=device)
            positions[r, pad:] = torch.arange(length, length + len(plan.suffix), device=device)
        context = None
        if width:
            context = _left_padded([caches.context(p.node) for p in plans], width)
        for plan in plans:
            caches.admitted(plan.node)
        cache = DynamicCache(ddp_cache_data=context, config=model.config)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
        batch = cls(cache, mask, positions[:, -1] + 1, out.logits[:, -1].float())
        if repeats > 1:
            batch.select(torch.arange(rows, device=device).repeat_interleave(repeats))
        return batch

    def forward(self, model, tokens: torch.Tensor) -> None:
        """Feed each row its next token; the logits become the following step's."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
        out = model(
            input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.positions[:, None],
            cache=self.cache, use_cache=True,
        )  # fmt: skip
        self.positions = self.positions + 1
        self.logits = out.logits[:, -1].float()

    def select(self, rows: torch.Tensor) -> None:
        """Keep (or repeat) only these rows, then drop the leading columns that no row attends to any more."""
        self.cache.batch_select_indices(rows)
        self.mask, self.positions, self.logits = self.mask[rows], self.positions[rows], self.logits[rows]
        unused = int(self.mask.any(0).int().argmax()) if self.rows else 0
        if unused:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]
            self.mask = self.mask[:, unused:]

    def join(self, other: KVBatch) -> None:
        """Append the rows of `other`, left-padding whichever has fewer columns."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_left(mine.keys, width, dim=2), _pad_left(theirs.keys, width, dim=2)])
            mine.values = torch.cat([_pad_left(mine.values, width, dim=2), _pad_left(theirs.values, width, dim=2)])
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(other.mask, width, dim=1)])
        self.positions = torch.cat([self.positions, other.positions])
        self.logits = torch.cat([self.logits, other.logits])


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _left_padded(contexts: list, width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the rows' contexts (batch 1 each, or None) right-aligned in `width` columns of zeros."""
    layers = []
    for layer in range(len(next(c for c in contexts if c is not None))):
        keys, values = [], []
        for context in contexts:
            k, v = context[layer] if context is not None else _empty_like(contexts, layer)
            keys.append(_pad_left(k, width, dim=2))
            values.append(_pad_left(v, width, dim=2))
        layers.append((torch.cat(keys), torch.cat(values)))
    return layers


def _empty_like(contexts: list, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    k, v = next(c for c in contexts if c is not None)[layer]
    return k[:, :, :0], v[:, :, :0]
