"""Batched generation with Hugging Face transformers: N samples per prompt, or one greedy answer.

Two paths give the same answers. The shared-prefix path (the default) runs every prompt token through the
model once: the runs that prompts share (the chat template's system turn, a database's schema) once per
call, each prompt's own tokens once for its n samples (`codelutra.generation.prefix_cache`), then decodes
in its own loop, which drops a row as soon as its answer ends and admits the next prompts in its place, and
draws from `generate`'s distribution computed on the top-k tokens only (`sampling_distribution`). The
plain path is `model.generate` over left-padded batches: every prompt prefilled n times from scratch, every
row decoded until the batch's longest answer ends; it is kept for models whose cache the shared path cannot
lay out, and as the reference that the tests and `benchmarks/speed.py` compare against.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from codelutra.candidates import Candidate
from codelutra.generation.constrain import GrammarMask, Grammars, advance
from codelutra.generation.prefix_cache import (
    KVBatch,
    PrefixCaches,
    plan_prefix_tree,
    supports_shared_prefix,
)
from codelutra.generation.shared_attention import shared_context_attention_on
from codelutra.generation.types import Messages, SamplingParams, render_prompt

# transformers' default top-k, which `generate` applies when sampling unless told otherwise; both paths pass
# it explicitly, so that they sample from the same distribution whatever a model's generation config says.
TOP_K = 50


class StopAfterClosingFence(StoppingCriteria):
    """Stop a sequence once its answer's code block is closed: whatever follows is never used.

    The instruction asks for one fenced code block; small models often go on with prose or a second
    block, and every token of that costs time in sampling and in training. It acts when the answer
    prefix opens the block (the default); otherwise the end-of-turn token ends the answer. Only the
    last few tokens are decoded at each step: decoding whole sequences costs a third of generation time.
    """

    WINDOW = 3  # tokens; a fence is at most this many tokens, however it is split

    def __init__(self, tokenizer, prompt_length: int, fences_in_prefix: int):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.fences_needed = 2 - fences_in_prefix  # the answer is done when it holds two fences

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_length
        if self.fences_needed > 1 or generated < 1:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return torch.tensor(self.closes(input_ids[:, -min(self.WINDOW, generated) :].tolist()), device=input_ids.device)

    def closes(self, windows: list[list[int]]) -> list[bool]:
        """For each answer's last generated tokens (at most WINDOW, at least one), whether they close the block."""
        if self.fences_needed > 1:
            return [False] * len(windows)
        return ["```" in t for t in self.tokenizer.batch_decode([w[-self.WINDOW :] for w in windows])]


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[Messages],
    *,
    answer_prefix: str = "",
    params: SamplingParams = SamplingParams(),
    progress: Callable[[int], None] | None = None,
    shared_prefix: bool = True,
    grammars: Sequence[str | None] | None = None,
) -> list[list[Candidate]]:
    """Return, for each chat prompt, `params.n` completions (see `Generate` in backends.py).

    `answer_prefix` is written into the assistant's turn before generation starts (e.g. an opening code
    fence) and is part of each returned completion, so a completion is always the whole answer.
    `params.batch_size` counts sequences decoded together; results come back in input order.
    `shared_prefix=False` takes the plain path (module docstring); so does, with a warning, a model whose
    cache holds layers other than plain full attention (sliding windows, linear attention) or whose
    attention takes no 4-D masks (FlashAttention).
    Greedy answers are the same on both paths; random samples are drawn from the same distribution but
    not the same random numbers (rows are drawn in another order).
    `grammars` (one per prompt, None for none: `codelutra.tasks.sql_grammar.prompt_grammars`) restricts each
    prompt's answers to its grammar; kept log-probabilities stay the unconstrained model's.
    """
    texts = [render_prompt(tokenizer, p, answer_prefix) for p in prompts]
    model.eval()
    torch.manual_seed(params.seed)
    if shared_prefix and not supports_shared_prefix(model):
        warnings.warn(f"{type(model).__name__}: cache or attention unfit for shared-prefix reuse; sampling with plain generate", stacklevel=2)
        shared_prefix = False
    grammars = list(grammars) if grammars is not None else [None] * len(texts)
    if not shared_prefix:
        return _generate_plain(model, tokenizer, texts, answer_prefix, params, progress, grammars)
    with shared_context_attention_on(model) as share:
        return _generate_shared(model, tokenizer, texts, answer_prefix, params, progress, share, grammars)


@dataclass
class _Row:
    """One sample being decoded: row r of the batch is rows[r]."""

    prompt: int
    sample: int
    tokens: list[int] = field(default_factory=list)
    logprob: float = 0.0  # of its tokens so far (raw logits), and of end-of-turn once scored
    scoring_end: bool = False  # its answer ended without end-of-turn: one more step scores end-of-turn
    budget_spent: bool = False  # it ran to max_new_tokens
    matcher: object = None  # its grammar's state (llguidance), None where unconstrained


def _generate_shared(model, tokenizer, texts, answer_prefix, params, progress, share: bool, grammars) -> list[list[Candidate]]:
    """The shared-prefix path: prefill shared runs once (prefix_cache), decode with rows joining and leaving.

    With `share`, rows that share a context read it once per step (`shared_attention`); otherwise each row
    holds its whole context.

    With `keep_logprobs`, each step's logits are scored as they come (log-softmax, the sampled token and
    end-of-turn gathered) and released: no step's full-vocabulary tensor outlives the step. An answer that
    ends at its closing fence or at max_new_tokens stays one step more to have its end-of-turn scored.
    Under a grammar, tokens are chosen from masked logits and scored on the raw ones.
    """
    n, keep, max_new_tokens = params.n, params.keep_logprobs, params.max_new_tokens
    order, leaves = plan_prefix_tree([tokenizer(t, add_special_tokens=False).input_ids for t in texts])
    caches, queue = PrefixCaches(model), deque(order)
    choose = _token_chooser(params)
    constrained = Grammars(tokenizer) if any(g is not None for g in grammars) else None
    fence = StopAfterClosingFence(tokenizer, 0, answer_prefix.count("```"))
    eos, end_ids = tokenizer.eos_token_id, {tokenizer.eos_token_id, tokenizer.pad_token_id}
    results: list[list[Candidate | None]] = [[None] * n for _ in texts]
    unfinished = [n] * len(texts)
    rows: list[_Row] = []
    batch: KVBatch | None = None
    # Admit prompts when a quarter of the batch is free: each admission is a forward pass and a cache copy.
    admit_at = max(n, params.batch_size // 4)
    while queue or rows:
        free = params.batch_size - len(rows)
        if queue and (not rows or free >= admit_at):
            admitted = [queue.popleft() for _ in range(min(len(queue), max(1, free // n)))]
            joining = KVBatch.prefill(model, caches, [leaves[i] for i in admitted], n, share)
            rows += [_Row(i, j, matcher=constrained and constrained.start(grammars[i])) for i in admitted for j in range(n)]
            if batch is None or batch.rows == 0:
                batch = joining
            else:
                batch.join(joining)
        deciding = torch.tensor([not row.scoring_end for row in rows], device=batch.logits.device)
        tokens = torch.full((len(rows),), eos, device=batch.logits.device)
        if deciding.any():
            matchers = [row.matcher for row in rows if not row.scoring_end]
            logits = batch.logits[deciding]
            tokens[deciding] = choose(constrained.masked(logits, matchers) if constrained else logits)
            if constrained:
                advance(matchers, tokens[deciding].tolist())
        if keep:  # scored now, the step's full-vocabulary tensor released
            logprobs = batch.logits.log_softmax(-1)
            token_logprobs, end_logprobs = logprobs.gather(1, tokens[:, None])[:, 0].tolist(), logprobs[:, eos].tolist()
            del logprobs
        grown, finished = [], []
        for r, (row, token) in enumerate(zip(rows, tokens.tolist())):
            if row.scoring_end or token in end_ids:  # its end-of-turn scored (or sampled) at this step
                row.logprob += end_logprobs[r] if keep else 0.0
                finished.append(r)
                continue
            row.tokens.append(token)
            row.logprob += token_logprobs[r] if keep else 0.0
            grown.append(r)
        for r, closed in zip(grown, fence.closes([rows[r].tokens for r in grown])):
            row = rows[r]
            row.budget_spent = len(row.tokens) == max_new_tokens and not closed
            if closed or len(row.tokens) == max_new_tokens:
                if keep:
                    row.scoring_end = True
                else:
                    finished.append(r)
        done = 0  # prompts whose last sample ended now
        for r in finished:
            row = rows[r]
            results[row.prompt][row.sample] = _sampled(tokenizer, row, answer_prefix, keep)
            unfinished[row.prompt] -= 1
            done += unfinished[row.prompt] == 0
        if finished:
            kept = [r for r in range(len(rows)) if r not in set(finished)]
            batch.select(torch.tensor(kept, dtype=torch.long, device=batch.mask.device))
            rows = [rows[r] for r in kept]
        if rows:
            batch.forward(model, torch.tensor([row.tokens[-1] for row in rows], device=batch.mask.device))
        if progress and done:
            progress(done)
    return results


def _generate_plain(model, tokenizer, texts, answer_prefix, params, progress, grammars) -> list[list[Candidate]]:
    """The plain path: `model.generate` over batches of prompts, shortest first, with left padding.

    A batch holds batch_size // n prompts. With `params.keep_logprobs`, generate holds every step's raw
    logits until the batch ends: steps x batch x vocabulary floats (0.4 GB for SmolLM2 at the default
    64 tokens and 32 sequences). Under a grammar, the mask runs before the sampling warpers (`GrammarMask`),
    and the kept logits are still the raw ones.
    """
    n, keep_logprobs, max_new_tokens = params.n, params.keep_logprobs, params.max_new_tokens
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    prompts_per_batch = max(1, params.batch_size // n)
    results: list[list[Candidate]] = [[] for _ in texts]
    tokenizer.padding_side = "left"
    if params.greedy:
        sampling = dict(do_sample=False)
    else:
        sampling = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=TOP_K)
    end_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    constrained = Grammars(tokenizer) if any(g is not None for g in grammars) else None
    for start in range(0, len(order), prompts_per_batch):
        batch = order[start : start + prompts_per_batch]
        enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        masks = {}
        if constrained:
            matchers = [constrained.start(grammars[i]) for i in batch for _ in range(n)]
            masks = _masked_sampling(constrained, matchers, enc.input_ids.shape[1], end_ids, params)
        out = model.generate(
            **enc,
            **(masks or sampling),
            # One step more when keeping log-probs: an answer cut at max_new_tokens gets its end-of-turn scored too.
            max_new_tokens=max_new_tokens + keep_logprobs,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stopping_criteria=StoppingCriteriaList([StopAfterClosingFence(tokenizer, enc.input_ids.shape[1], answer_prefix.count("```"))]),
            return_dict_in_generate=True,
            output_logits=keep_logprobs,
        )
        generated = out.sequences[:, enc.input_ids.shape[1] :]
        raw_ends = _answer_ends(generated, end_ids)
        ends = [min(end, max_new_tokens) for end in raw_ends]
        decoded = tokenizer.batch_decode([row[:end] for row, end in zip(generated.tolist(), ends)], skip_special_tokens=True)
        logprobs = _answer_logprobs(out.logits, generated, ends, tokenizer.eos_token_id) if keep_logprobs else None
        completions = [
            Candidate(
                answer_prefix + text,
                generated[r, : ends[r]].tolist() if keep_logprobs else None,
                logprobs[r] if keep_logprobs else None,
                truncated=raw_ends[r] >= max_new_tokens and not _block_closed(answer_prefix + text, answer_prefix),
            )
            for r, text in enumerate(decoded)
        ]
        del out  # the logits of every step: the batch's largest tensors
        for j, i in enumerate(batch):
            results[i] = completions[j * n : (j + 1) * n]
        if progress:
            progress(len(batch))
    return results


def _masked_sampling(constrained: Grammars, matchers, prompt_length: int, end_ids: set[int], params: SamplingParams) -> dict:
    """`generate`'s sampling arguments with the grammar's mask first, then the warpers `sampling` would have made."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    if params.greedy:
        mask = GrammarMask(constrained, matchers, prompt_length, end_ids)
        return dict(do_sample=False, logits_processor=LogitsProcessorList([mask]))
    warpers = [TemperatureLogitsWarper(params.temperature), TopKLogitsWarper(TOP_K)]
    warpers += [TopPLogitsWarper(params.top_p)] if params.top_p < 1.0 else []
    mask = GrammarMask(constrained, matchers, prompt_length, end_ids, warpers)
    # generate's own warpers off (it would run them before a processor passed to it): the mask runs them itself.
    return dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, logits_processor=LogitsProcessorList([mask]))


def _token_chooser(params: SamplingParams) -> Callable[[torch.Tensor], torch.Tensor]:
    """Next tokens from raw logits as `generate` picks them: argmax, or a draw from `sampling_distribution`."""
    if params.greedy:
        return lambda logits: logits.argmax(-1)

    def sample(logits: torch.Tensor) -> torch.Tensor:
        probs, tokens = sampling_distribution(logits, params)
        return tokens.gather(1, torch.multinomial(probs, num_samples=1)).squeeze(1)

    return sample


def sampling_distribution(logits: torch.Tensor, params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    """`generate`'s sampling distribution (temperature, then top-k, then top-p), over the top-k tokens only.

    Returns each row's top-k token ids and their probabilities (unnormalised where top-p drops some).
    `generate`'s top-p sorts the whole vocabulary at every step and draws from a full-vocabulary softmax:
    on a CPU that costs a third of the model's own decode step (`benchmarks/decode_step.py`: 120 ms against
    7-9 ms here, 32 rows of SmolLM2's 49,152 logits). Top-k has already left at most k tokens, so both are done on those k:
    a token is dropped when the tokens more likely than it already hold top_p of the mass, as in
    transformers' TopPLogitsWarper (which keeps at least one).
    """
    scaled = logits / params.temperature if params.temperature != 1.0 else logits
    k = min(TOP_K, scaled.shape[-1])
    values, tokens = scaled.topk(k)  # sorted, most likely first
    kth = values[:, -1:]
    # TopKLogitsWarper keeps every token tied with the k-th (bf16 logits tie); -inf ones (a grammar's mask) get no mass.
    tied = int(((scaled >= kth) & (scaled > float("-inf"))).sum(-1).max())
    if tied > k:
        values, tokens = scaled.topk(tied)
        values = values.masked_fill(values < kth, float("-inf"))
    probs = values.softmax(-1)
    if params.top_p < 1.0:
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= params.top_p, 0.0)
    return probs, tokens


def _sampled(tokenizer, row: _Row, answer_prefix: str, keep_logprobs: bool) -> Candidate:
    text = answer_prefix + tokenizer.decode(row.tokens, skip_special_tokens=True)
    return Candidate(
        text,
        row.tokens if keep_logprobs else None,
        row.logprob if keep_logprobs else None,
        truncated=row.budget_spent and not _block_closed(text, answer_prefix),
    )


def _block_closed(completion: str, answer_prefix: str) -> bool:
    """Whether an answer stopped by its closing fence rather than by the token budget (see StopAfterClosingFence)."""
    return "```" in answer_prefix and completion.count("```") >= 2


def _answer_ends(generated: torch.Tensor, end_ids: set[int]) -> list[int]:
    """Per row, the number of generated tokens before the first end-of-turn or padding token (all, if none).

    A row stopped at its closing fence is padded from the next step on, so this also finds where it stopped.
    """
    ends = []
    for row in generated.tolist():
        ends.append(next((t for t, token in enumerate(row) if token in end_ids), len(row)))
    return ends


def _answer_logprobs(logits: tuple[torch.Tensor, ...], generated: torch.Tensor, ends: list[int], eos: int) -> list[float | None]:
    """log p(answer tokens + end-of-turn) per row, from the raw logits of each generation step.

    The logits of step t are the model's prediction given the prompt and tokens before t, so the answer's
    tokens are scored by the steps before `end` and the end-of-turn token by step `end`, whatever token the
    generator put there (end-of-turn itself, padding after the fence stop, or the one step generated past
    max_new_tokens). A row that ended on the batch's last step has no such step: None.
    """
    steps = len(logits)
    token_logps = torch.empty(generated.shape[0], steps)
    eos_logps = torch.empty(generated.shape[0], steps)
    for t, step_logits in enumerate(logits):
        step = step_logits.float().log_softmax(-1)
        token_logps[:, t] = step.gather(1, generated[:, t : t + 1]).squeeze(1).cpu()
        eos_logps[:, t] = step[:, eos].cpu()
    return [
        float(token_logps[r, :end].sum() + eos_logps[r, end]) if end < steps else None for r, end in enumerate(ends)
    ]
