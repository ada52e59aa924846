"""Shared-prefix prefill: the tokens that prompts share are run through the model once, their KV cache reused.

A call's prompts share most of their tokens: the chat template's system turn with every other prompt, the
database schema with every problem of that database. `plan_prefix_tree` finds those shared runs at the
token level (a compressed prefix tree over the prompts' token ids); each prompt's own tokens after its
deepest shared run are a leaf of that tree. `PrefixCaches.prefill` computes the tree's runs once each,
packed into batch-1 forward passes whose 4-D attention mask lets every token see only its own ancestors
(and positions that continue from its parent's), so no token is padded and none computed twice.

A decode batch (`KVBatch`) then holds one row per sample. The context that rows share (a prompt's, for its
n samples; a database's schema run, for its problems) is kept once and read once per step for all of them
(`shared_attention`); each row's cache holds the rest, laid out as [left padding][the rest of its prompt][its
generated tokens], with an attention mask that hides the padding and position ids that count the row's
whole context: the model sees exactly the tokens and positions of a plain forward pass over the row.
Padded keys and values are zeros and masked, so they get exactly zero attention weight. Its cache layers
(`GrowingLayer`) write each step's token into room kept at their end instead of copying the cache. Only caches made
of plain full-attention layers (`DynamicLayer`) can be laid out this way, under an attention that takes
4-D masks: `supports_shared_prefix` says whether a model's do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from codelutra.generation.shared_attention import SharedContexts

# A shared run becomes a node of its own only when it spares at least this many token computations.
MIN_SAVED_TOKENS = 32
# Tokens per packed prefill pass: its attention is dense over the pass, so longer passes waste more on masked pairs.
PACK_TOKENS = 512

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer, keys and values of shape (1, heads, tokens, head size)


@dataclass(eq=False)
class Node:
    """A run of prompt tokens after its parent's: shared by several prompts, or one prompt's own tail (a leaf)."""

    tokens: list[int]
    start: int  # the position of its first token (the length of its ancestors' runs together)
    parent: Node | None
    users: int = 0  # prompts below it whose rows are not yet built: its cache is freed when none are left
    kv: KV | None = field(default=None, repr=False)

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)

    def chain(self) -> list[Node]:
        """Its ancestors and itself, root first."""
        nodes, node = [], self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


def plan_prefix_tree(prompts: list[list[int]], min_saved_tokens: int = MIN_SAVED_TOKENS) -> tuple[list[int], list[Node]]:
    """The order to sample the prompts in (prompts that share runs next to each other) and each prompt's leaf.

    Walks the compressed prefix tree of the token sequences: a group's longest common prefix beyond its
    parent's becomes a node when it spares at least `min_saved_tokens` token computations; the group then
    splits by its next token. A leaf holds at least one token, whose logits start the prompt's answer.
    Iterative, as a tree over 1,000-token prompts is deeper than Python's stack.
    """
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    leaves: list[Node | None] = [None] * len(prompts)
    stack = [(order, 0, None)] if order else []  # (a group's prompts in sorted order, tokens covered by its ancestors, parent)
    while stack:
        members, depth, parent = stack.pop()
        if len(members) == 1:
            [i] = members
            start = parent.end if parent else 0
            leaves[i] = Node(prompts[i][start:], start, parent)
            continue
        first, last = prompts[members[0]], prompts[members[-1]]  # sorted: their common prefix is everyone's
        cap = min(len(prompts[i]) for i in members) - 1
        shared = next((t for t in range(depth, cap) if first[t] != last[t]), cap)
        if (len(members) - 1) * (shared - depth) >= min_saved_tokens:
            parent = Node(first[depth:shared], depth, parent)
            depth = shared
        groups: dict[int, list[int]] = {}
        for i in members:
            groups.setdefault(prompts[i][shared], []).append(i)
        if len(groups) == 1:  # identical up to the cap (a prompt repeated): each is a leaf under `parent`
            stack += [([i], depth, parent) for i in reversed(members)]
        else:
            stack += [(group, depth, parent) for group in reversed(groups.values())]
    for leaf in leaves:
        for node in leaf.chain():
            node.users += 1
    return order, leaves


def supports_shared_prefix(model) -> bool:
    """Whether the model's cache is all plain full-attention layers, which `KVBatch` can pad and join, and its
    attention takes the 4-D float masks of the packed prefill (SDPA and eager do; FlashAttention does not)."""
    cache = DynamicCache(config=model.config)
    plain_layers = bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)
    return plain_layers and model.config._attn_implementation in ("sdpa", "eager")


class PrefixCaches:
    """Computes the runs of the prefix tree once each, and keeps each until its last prompt's rows are built."""

    def __init__(self, model):
        self.model = model

    def prefill(self, leaves: list[Node]) -> torch.Tensor:
        """Compute every run on the leaves' chains not computed yet; return each leaf's next-token logits (float32)."""
        todo, seen = [], set()
        for leaf in leaves:
            for node in leaf.chain():
                if node.kv is None and node not in seen:  # a chain lists parents first: todo is in tree order
                    seen.add(node)
                    todo.append(node)
        logits, wanted, chunk = {}, set(leaves), []
        for node in todo:
            if chunk and sum(len(n.tokens) for n in chunk) + len(node.tokens) > PACK_TOKENS:
                logits.update(self._packed_pass(chunk, wanted))
                chunk = []
            chunk.append(node)
        logits.update(self._packed_pass(chunk, wanted))
        return torch.stack([logits[leaf] for leaf in leaves])

    def _packed_pass(self, chunk: list[Node], wanted: set[Node]) -> dict[Node, torch.Tensor]:
        """One forward pass over the runs of `chunk` side by side, on the cache of their computed ancestors."""
        device, dtype = self.model.device, self.model.dtype
        past = list(dict.fromkeys(a for node in chunk for a in node.chain()[:-1] if a.kv is not None))
        columns, offset = {}, 0
        for node in past + chunk:
            columns[node] = (offset, offset + len(node.tokens))
            offset += len(node.tokens)
        width = columns[past[-1]][1] if past else 0
        allowed = torch.zeros(offset - width, offset, dtype=torch.bool, device=device)
        for node in chunk:
            first, last = columns[node]
            for ancestor in node.chain()[:-1]:
                allowed[first - width : last - width, slice(*columns[ancestor])] = True
            allowed[first - width : last - width, first:last] = torch.ones(last - first, last - first, dtype=torch.bool, device=device).tril()
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
        ids = torch.tensor([[t for node in chunk for t in node.tokens]], device=device)
        positions = torch.tensor([[p for node in chunk for p in range(node.start, node.end)]], device=device)
        leaves = [node for node in chunk if node in wanted]
        # long: a pass of shared runs alone (a schema longer than PACK_TOKENS) keeps no position at all
        last_tokens = torch.tensor([columns[leaf][1] - 1 - width for leaf in leaves], dtype=torch.long, device=device)
        cache = DynamicCache(ddp_cache_data=concat_kv([a.kv for a in past]) if past else None, config=self.model.config)
        out = self.model(
            input_ids=ids, position_ids=positions, attention_mask=mask[None, None], cache=cache, use_cache=True,
            logits_to_keep=last_tokens,
        )
        for node in chunk:
            first, last = columns[node]
            node.kv = [(layer.keys[:, :, first:last].clone(), layer.values[:, :, first:last].clone()) for layer in cache.layers]
        return {leaf: out.logits[0, i].float() for i, leaf in enumerate(leaves)}

    @staticmethod
    def release(leaf: Node) -> None:
        """A prompt's rows are built: free the runs of its chain that no other prompt still needs."""
        for node in leaf.chain():
            node.users -= 1
            if node.users == 0:
                node.kv = None


def concat_kv(runs: list[KV]) -> KV:
    if len(runs) == 1:
        return runs[0]
    return [(torch.cat([r[i][0] for r in runs], dim=2), torch.cat([r[i][1] for r in runs], dim=2)) for i in range(len(runs[0]))]


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer whose keys and values are views of buffers with room to grow.

    transformers' `DynamicLayer` concatenates each decode step's keys and values onto the whole cache, so a
    step copies the cache once per layer (`benchmarks/decode_step.py` times a step both ways).
    Here a step writes its token into the room left at the end; the buffers are copied only when the room is
    spent (every `ROOM` steps) or when something else replaced `keys` (a join, a trim: then the new tensors
    become the buffers' start). Rows kept by `batch_select_indices` keep their room.
    """

    ROOM = 64  # columns of room added when the buffers are (re)made
    _view: torch.Tensor | None = None  # the `keys` this layer last handed out; anything else means re-buffer

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        if self.keys is not self._view or self._length + new > self._key_buffer.shape[-2]:
            self._rebuffer(key_states, value_states, new)
        self._key_buffer[..., self._length : self._length + new, :] = key_states
        self._value_buffer[..., self._length : self._length + new, :] = value_states
        self._length += new
        self._hand_out()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.keys is not self._view:
            return super().batch_select_indices(indices)
        self._key_buffer, self._value_buffer = self._key_buffer[indices], self._value_buffer[indices]
        self._hand_out()

    def _rebuffer(self, key_states: torch.Tensor, value_states: torch.Tensor, new: int) -> None:
        keys, values = (self.keys, self.values) if self.keys.numel() else (key_states[..., :0, :], value_states[..., :0, :])
        self._key_buffer = self._value_buffer = None  # a joined or trimmed cache made them stale: free them first
        self._length = keys.shape[-2]
        shape = (*key_states.shape[:-2], self._length + new + self.ROOM, key_states.shape[-1])
        self._key_buffer, self._value_buffer = key_states.new_empty(shape), value_states.new_empty(shape)
        self._key_buffer[..., : self._length, :], self._value_buffer[..., : self._length, :] = keys, values

    def _hand_out(self) -> None:
        self.keys, self.values = self._key_buffer[..., : self._length, :], self._value_buffer[..., : self._length, :]
        self._view = self.keys


def growing_cache(layers: KV) -> Cache:
    """A cache of `GrowingLayer`s holding these keys and values (per layer, batch first)."""
    cache = Cache(layers=[GrowingLayer() for _ in layers])
    for layer, (keys, values) in zip(cache.layers, layers):
        layer.update(keys, values)
    return cache


class KVBatch:
    """The rows being decoded together: their caches, attention mask and next positions, kept in step.

    A row's context is split in two: a shared context (`contexts[row_context[r]]`, kept once for every row
    under it and read by `shared_attention`), and its own tokens in `cache`, left-padded. `mask` is
    (rows, own cache columns): which columns each row attends to; `positions` is each row's next position
    (its whole context so far); `logits` are each row's raw next-token logits (float32). Rows that share a
    context are consecutive, and stay so: rows leave in place and joining rows come last.
    """

    def __init__(self, cache: Cache, mask: torch.Tensor, positions: torch.Tensor, logits: torch.Tensor, contexts: list[KV], row_context: torch.Tensor):
        self.cache, self.mask, self.positions, self.logits = cache, mask, positions, logits
        self.contexts, self.row_context = contexts, row_context  # -1: a row under no shared context
        self._spans = _spans(row_context)

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @classmethod
    def prefill(cls, model, caches: PrefixCaches, leaves: list[Node], repeats: int, share: bool) -> KVBatch:
        """The rows of these prompts, each repeated `repeats` times: their runs prefilled, their caches laid out.

        With `share`, rows share the contexts `_shared_contexts` picks (n > 1: a prompt's whole chain; n = 1:
        the ancestor that spares the most reads); everything else is a row's own.
        """
        logits = caches.prefill(leaves)
        device = model.device
        contexts, row_context, shared_lengths, key = [], [], [], None
        for shared in _shared_contexts(leaves, repeats) if share else [None] * len(leaves):
            if shared is None:
                row_context.append(-1)
                shared_lengths.append(0)
                continue
            if shared is not key:  # rows under one node are consecutive (the plan's order): one context each run
                contexts.append([(k[0], v[0]) for k, v in concat_kv([node.kv for node in shared.chain()])])
                key = shared
            row_context.append(len(contexts) - 1)
            shared_lengths.append(shared.end)
        own = [concat_kv([node.kv for node in leaf.chain() if node.start >= start]) if leaf.end > start else None for leaf, start in zip(leaves, shared_lengths)]
        width = max(leaf.end - start for leaf, start in zip(leaves, shared_lengths))
        mask = torch.zeros(len(leaves), width, dtype=torch.long, device=device)
        for r, (leaf, start) in enumerate(zip(leaves, shared_lengths)):
            mask[r, width - (leaf.end - start) :] = 1
        empty = [(k[:, :, :0], v[:, :, :0]) for k, v in leaves[0].chain()[0].kv]
        layers = [
            (torch.cat([_pad_left((c or empty)[i][0], width, dim=2) for c in own]), torch.cat([_pad_left((c or empty)[i][1], width, dim=2) for c in own]))
            for i in range(len(empty))
        ]
        del own
        for leaf in leaves:
            caches.release(leaf)
        positions = torch.tensor([leaf.end for leaf in leaves], device=device)
        batch = cls(growing_cache(layers), mask, positions, logits, contexts, torch.tensor(row_context, device=device))
        if repeats > 1:
            batch.select(torch.arange(len(leaves), device=device).repeat_interleave(repeats))
        return batch

    def forward(self, model, tokens: torch.Tensor) -> None:
        """Feed each row its next token; the logits become the following step's."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
        shared = {"shared_contexts": SharedContexts(self.contexts, self._spans)} if self._spans else {}
        out = model(
            input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.positions[:, None],
            cache=self.cache, use_cache=True, **shared,
        )
        self.positions = self.positions + 1
        self.logits = out.logits[:, -1].float()

    def select(self, rows: torch.Tensor) -> None:
        """Keep (or repeat) only these rows, then drop the columns and contexts that no row attends to any more."""
        self.cache.batch_select_indices(rows)
        self.mask, self.positions, self.logits = self.mask[rows], self.positions[rows], self.logits[rows]
        unused = int(self.mask.any(0).int().argmax()) if self.rows and self.mask.shape[1] else 0
        if unused:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]
            self.mask = self.mask[:, unused:]
        kept = self.row_context[rows]
        used = sorted(set(kept.tolist()) - {-1})
        renumber = torch.full((len(self.contexts) + 1,), -1, dtype=torch.long, device=kept.device)
        renumber[torch.tensor(used, dtype=torch.long, device=kept.device)] = torch.arange(len(used), device=kept.device)
        self.contexts, self.row_context = [self.contexts[c] for c in used], renumber[kept]  # -1 indexes the last entry: -1
        self._spans = _spans(self.row_context)

    def join(self, other: KVBatch) -> None:
        """Append the rows of `other`, left-padding whichever has fewer own columns."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_left(mine.keys, width, dim=2), _pad_left(theirs.keys, width, dim=2)])
            mine.values = torch.cat([_pad_left(mine.values, width, dim=2), _pad_left(theirs.values, width, dim=2)])
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(other.mask, width, dim=1)])
        self.positions = torch.cat([self.positions, other.positions])
        self.logits = torch.cat([self.logits, other.logits])
        offset = torch.where(other.row_context >= 0, len(self.contexts), 0)
        self.contexts, self.row_context = self.contexts + other.contexts, torch.cat([self.row_context, other.row_context + offset])
        self._spans = _spans(self.row_context)


def _shared_contexts(leaves: list[Node], repeats: int) -> list[Node | None]:
    """Per prompt, the node whose chain its rows share as a context, or None.

    With n > 1 samples, a prompt's whole chain. With n = 1, the ancestor that spares the most reads,
    (other prompts under it here) x (its chain's length): a database's schema run rather than a question's
    few shared words below it, which would split the rows into many short contexts.
    """
    if repeats > 1:
        return list(leaves)
    below: dict[Node, int] = {}
    for leaf in leaves:
        for node in leaf.chain()[:-1]:
            below[node] = below.get(node, 0) + 1
    chosen = []
    for leaf in leaves:
        spared = {node: (below[node] - 1) * node.end for node in leaf.chain()[:-1]}
        best = max(spared, key=spared.get, default=None)
        chosen.append(best if best is not None and spared[best] > 0 else None)
    return chosen


def _spans(row_context: torch.Tensor) -> list[tuple[int, int, int]]:
    """(context, first row, end row) for each run of consecutive rows under one shared context."""
    spans, first = [], 0
    contexts, counts = torch.unique_consecutive(row_context, return_counts=True)
    for context, count in zip(contexts.tolist(), counts.tolist()):
        if context >= 0:
            spans.append((context, first, first + count))
        first += count
    return spans


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
