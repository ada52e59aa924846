"""Batched generation with Hugging Face transformers: N samples per prompt, or one greedy answer."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from codelutra.generation.types import Messages, Sampled, SamplingParams, render_prompt


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
        window = input_ids[:, -min(self.WINDOW, generated) :]
        return torch.tensor(["```" in t for t in self.tokenizer.batch_decode(window)], device=input_ids.device)


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[Messages],
    *,
    answer_prefix: str = "",
    params: SamplingParams = SamplingParams(),
    progress: Callable[[int], None] | None = None,
) -> list[list[Sampled]]:
    """Return, for each chat prompt, `params.n` completions (see `Generate` in backends.py).

    `answer_prefix` is written into the assistant's turn before generation starts (e.g. an opening code
    fence) and is part of each returned completion, so a completion is always the whole answer.

    `params.batch_size` counts sequences, so a batch holds batch_size // n prompts. Prompts are processed
    shortest first to waste little compute on padding; results come back in input order.
    With `params.keep_logprobs`, each completion carries its tokens and reference log-prob; generate then
    holds every step's raw logits until the batch ends: steps x batch x vocabulary floats (0.4 GB for
    SmolLM2 at the default 64 tokens and 32 sequences).
    """
    n, keep_logprobs, max_new_tokens = params.n, params.keep_logprobs, params.max_new_tokens
    texts = [render_prompt(tokenizer, p, answer_prefix) for p in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    prompts_per_batch = max(1, params.batch_size // n)
    results: list[list[Sampled]] = [[] for _ in texts]
    tokenizer.padding_side = "left"
    torch.manual_seed(params.seed)
    model.eval()
    if params.greedy:
        sampling = dict(do_sample=False)
    else:
        sampling = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p)
    end_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for start in range(0, len(order), prompts_per_batch):
        batch = order[start : start + prompts_per_batch]
        enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        out = model.generate(
            **enc,
            **sampling,
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
            Sampled(
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
