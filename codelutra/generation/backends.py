"""Sampling backends: one interface for the stages, three ways to get completions.

The stages (`codelutra.loop.stages`) only ever call a `Generate` opened by `open_backend`, so where
completions come from is configuration (`generation.backend`), not code:
- `transformers` (the default): the model in this process, `codelutra.generation.sampler.generate`;
- `vllm`: the model in this process on a GPU through vLLM (`codelutra.generation.vllm_backend`);
- `openai`: an OpenAI-compatible endpoint serving a fixed model (`codelutra.generation.openai_backend`),
  so it can score a served or hosted model but cannot sample from a policy that training changes.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator, NamedTuple, Protocol, Sequence

from codelutra.config import GenerationConfig

Messages = list[dict[str, str]]


class Sampled(NamedTuple):
    """One sampled answer, with what training needs to skip the reference model's forward pass over it.

    `token_ids` are the tokens generated after the prompt and answer prefix, up to the end of the answer
    (end-of-turn excluded). `logprob` is log p(token_ids + end-of-turn | prompt + prefix) under the model
    that sampled them, from its raw (untempered, unfiltered) logits: the DPO reference's log-probability
    of this answer, since the sampling policy is the next iteration's reference. It is None where the
    sampler never scored the end-of-turn token (the answer closed its block on its batch's last step).
    """

    text: str
    token_ids: list[int] | None = None
    logprob: float | None = None


class Generate(Protocol):
    def __call__(
        self,
        prompts: Sequence[Messages],
        *,
        n: int,
        answer_prefix: str,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        batch_size: int,
        seed: int,
        progress: Callable[[int], None] | None = None,
        keep_logprobs: bool = False,
    ) -> list[list[str]] | list[list[Sampled]]:
        """For each chat prompt, in input order, `n` completions (greedy when temperature is 0, which needs n == 1).

        Every completion is the whole answer: it starts with `answer_prefix` (an opening code fence)
        however the backend got there. `batch_size` counts sequences per forward pass where the backend
        batches itself (transformers). `progress(k)` is called with the number of prompts just finished.
        With `keep_logprobs` each completion is a `Sampled`; only the transformers backend fills in its
        tokens and log-probability (the others leave them None, and training computes them).
        """


@contextmanager
def open_backend(generation: GenerationConfig, model: str) -> Iterator[Generate]:
    """The configured backend for `model` (a local directory or Hub id; for openai, the endpoint's model name)."""
    if generation.backend == "transformers":
        from codelutra.generation import sampler
        from codelutra.models import load_model, load_tokenizer

        yield partial(sampler.generate, load_model(model), load_tokenizer(model))
    elif generation.backend == "vllm":
        from codelutra.generation.vllm_backend import open_vllm

        with open_vllm(model) as generate:
            yield generate
    else:
        from codelutra.generation.openai_backend import Endpoint

        yield Endpoint(
            base_url=generation.base_url,
            model=model,
            api_key=os.environ.get(generation.api_key_env),
            concurrency=generation.concurrency,
        ).generate
