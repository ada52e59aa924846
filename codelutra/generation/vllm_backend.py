"""Generation with vLLM in this process, for GPU users: much faster sampling than transformers' generate.

Untested here (no GPU in this project's machine, vLLM not installed); `pip install codelutra[vllm]`.
It mirrors the transformers backend: the same chat template, the same answer prefix written into the
assistant's turn, the same tokens (no special tokens added on top of the template), and a stop at the
closing fence when the prefix opens the block. Sampled texts differ from transformers' (another RNG).
Grammars (`generation.constrain`) go to vLLM's structured outputs with its llguidance backend, which reads the
grammar's Lark dialect as the transformers backend's llguidance does (vLLM >= 0.12's API; untested, no GPU here).
The engine is shut down when the stage ends, so that training can have the GPU.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from codelutra.candidates import Candidate
from codelutra.errors import UserError
from codelutra.generation.types import Messages, SamplingParams, render_prompt


@contextmanager
def open_vllm(model: str, constrained: bool = False) -> Iterator[Callable[..., list[list[Candidate]]]]:
    try:
        from vllm import LLM
        from vllm import SamplingParams as VllmSamplingParams
    except ImportError:
        raise UserError("generation.backend=vllm needs vLLM (and a CUDA GPU): pip install 'codelutra[vllm]'") from None
    if constrained:
        try:
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError:
            raise UserError("generation.constrain with vLLM needs vLLM's structured outputs (vllm >= 0.12)") from None
    # The grammar is llguidance's Lark dialect: vLLM's default engine for grammars (xgrammar) does not read it.
    llm = LLM(model=model, **({"structured_outputs_config": {"backend": "guidance"}} if constrained else {}))
    tokenizer = llm.get_tokenizer()

    def generate(
        prompts: Sequence[Messages],
        *,
        answer_prefix: str,
        params: SamplingParams,  # batch_size: vLLM schedules its own batches; keep_logprobs: not wired in
        progress: Callable[[int], None] | None = None,
        grammars: Sequence[str | None] | None = None,
    ) -> list[list[Candidate]]:
        texts = [render_prompt(tokenizer, p, answer_prefix) for p in prompts]
        inputs = [{"prompt_token_ids": tokenizer(t, add_special_tokens=False).input_ids} for t in texts]
        stop = ["```"] if "```" in answer_prefix else None
        if grammars is not None and any(g is not None for g in grammars) and not constrained:
            raise ValueError("grammars given to a vLLM engine opened without constrained=True")

        def sampling(grammar: str | None):
            return VllmSamplingParams(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                seed=params.seed,
                stop=stop,
                include_stop_str_in_output=True,
                **({"structured_outputs": StructuredOutputsParams(grammar=grammar)} if grammar is not None else {}),
            )

        per_prompt = [sampling(g) for g in grammars] if grammars is not None else sampling(None)
        outputs = llm.generate(inputs, per_prompt, use_tqdm=False)
        if progress:
            progress(len(prompts))
        return [[Candidate(answer_prefix + o.text, truncated=o.finish_reason == "length") for o in out.outputs] for out in outputs]

    try:
        yield generate
    finally:
        llm = None  # the engine's last reference (`generate` above reads it): freed before training takes the GPU
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
