"""Batched generation with Hugging Face transformers: N samples per prompt, or one greedy answer."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList


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
    prompts: Sequence[list[dict[str, str]]],
    *,
    n: int = 1,
    answer_prefix: str = "",
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 128,
    batch_size: int = 32,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """Return, for each chat prompt, `n` completions (greedy when temperature is 0, which needs n == 1).

    `answer_prefix` is written into the assistant's turn before generation starts (e.g. an opening code
    fence) and is part of each returned completion, so a completion is always the whole answer.

    `batch_size` counts sequences, so a batch holds batch_size // n prompts. Prompts are processed
    shortest first to waste little compute on padding; results come back in input order.
    `progress(k)` is called with the number of prompts just finished.
    """
    if temperature == 0 and n != 1:
        raise ValueError("greedy decoding gives one answer per prompt: use n=1 or temperature > 0")
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) + answer_prefix for p in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    prompts_per_batch = max(1, batch_size // n)
    results: list[list[str]] = [[] for _ in texts]
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    model.eval()
    for start in range(0, len(order), prompts_per_batch):
        batch = order[start : start + prompts_per_batch]
        enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
        out = model.generate(
            **enc,
            **sampling,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stopping_criteria=StoppingCriteriaList([StopAfterClosingFence(tokenizer, enc.input_ids.shape[1], answer_prefix.count("```"))]),
        )
        completions = tokenizer.batch_decode(out[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
        for j, i in enumerate(batch):
            results[i] = [answer_prefix + c for c in completions[j * n : (j + 1) * n]]
        if progress:
            progress(len(batch))
    return results
