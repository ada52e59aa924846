"""Generation with vLLM in this process, for GPU users: much faster sampling than transformers' generate.

Untested here (no GPU in this project's machine, vLLM not installed); `pip install codelutra[vllm]`.
It mirrors the transformers backend: the same chat template, the same answer prefix written into the
assistant's turn, the same tokens (no special tokens added on top of the template), and a stop at the
closing fence when the prefix opens the block. Sampled texts differ from transformers' (another RNG).
The engine is shut down when the stage ends, so that training can have the GPU.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from codelutra.errors import UserError
from codelutra.generation.backends import Sampled


@contextmanager
def open_vllm(model: str) -> Iterator[Callable[..., list[list[str]]]]:
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise UserError("generation.backend=vllm needs vLLM (and a CUDA GPU): pip install 'codelutra[vllm]'") from None
    llm = LLM(model=model)
    tokenizer = llm.get_tokenizer()

    def generate(
        prompts: Sequence[list[dict[str, str]]],
        *,
        n: int,
        answer_prefix: str,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        batch_size: int,  # vLLM schedules its own batches
        seed: int,
        progress: Callable[[int], None] | None = None,
        keep_logprobs: bool = False,  # vLLM's own log-probs are not wired in: training computes the reference's
    ) -> list[list[str]] | list[list[Sampled]]:
        if temperature == 0 and n != 1:
            raise ValueError("greedy decoding gives one answer per prompt: use n=1 or temperature > 0")
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) + answer_prefix for p in prompts]
        inputs = [{"prompt_token_ids": tokenizer(t, add_special_tokens=False).input_ids} for t in texts]
        stop = ["```"] if "```" in answer_prefix else None
        params = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_new_tokens,
            seed=seed,
            stop=stop,
            include_stop_str_in_output=True,
        )
        outputs = llm.generate(inputs, params, use_tqdm=False)
        if progress:
            progress(len(prompts))
        texts = [[answer_prefix + o.text for o in out.outputs] for out in outputs]
        return [[Sampled(t) for t in row] for row in texts] if keep_logprobs else texts

    try:
        yield generate
    finally:
        del llm
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
