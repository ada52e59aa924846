"""Sampling backends: one interface for the stages, three ways to get completions.

The stages (`codelutra.loop.stages`) only ever call a `Generate` opened by `open_backend`, so where
completions come from is configuration (`generation.backend`), not code:
- `transformers` (the default): the model in this process, `codelutra.generation.sampler.generate`, its
  linear layers run by oneDNN on the CPU (`codelutra.generation.onednn_linear`);
- `vllm`: the model in this process on a GPU through vLLM (`codelutra.generation.vllm_backend`);
- `openai`: an OpenAI-compatible endpoint serving a fixed model (`codelutra.generation.openai_backend`),
  so it can score a served or hosted model but cannot sample from a policy that training changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Protocol

from codelutra.candidates import Candidate
from codelutra.config import GenerationConfig
from codelutra.generation.types import Messages, SamplingParams


class Generate(Protocol):
    def __call__(
        self,
        prompts: Sequence[Messages],
        *,
        answer_prefix: str,
        params: SamplingParams,
        progress: Callable[[int], None] | None = None,
        grammars: Sequence[str | None] | None = None,
    ) -> list[list[Candidate]]:
        """For each chat prompt, in input order, `params.n` completions.

        `grammars`, one per prompt (None: unconstrained), restrict each prompt's completions to a grammar
        (`codelutra.generation.constrain`); the openai backend takes none (the config refuses it).

        Every completion is the whole answer: it starts with `answer_prefix` (an opening code fence)
        however the backend got there. `progress(k)` is called with the number of prompts just finished.
        Only the transformers backend fills in tokens and log-probabilities (`params.keep_logprobs`);
        the others leave them None, and training computes them.
        """


@contextmanager
def open_backend(generation: GenerationConfig, model: str) -> Iterator[Generate]:
    """The configured backend for `model` (a local directory or Hub id; for openai, the endpoint's model name)."""
    if generation.backend == "transformers":
        from codelutra.generation import sampler
        from codelutra.generation.onednn_linear import onednn_linear_layers
        from codelutra.models import load_model, load_tokenizer

        loaded = load_model(model)
        with onednn_linear_layers(loaded):  # reordered once for the backend's lifetime: its weights never change
            yield partial(sampler.generate, loaded, load_tokenizer(model))
    elif generation.backend == "vllm":
        from codelutra.generation.vllm_backend import open_vllm

        with open_vllm(model, constrained=generation.constrain != "none") as generate:
            yield generate
    else:
        from codelutra.generation.openai_backend import Endpoint

        yield Endpoint(
            base_url=generation.base_url,
            model=model,
            api_key=os.environ.get(generation.api_key_env),
            concurrency=generation.concurrency,
        ).generate
