"""What every sampling backend takes and gives, and the one way a prompt becomes text.

The sampler, the vLLM backend and the trainer must see a prompt as the same tokens: the trainer reuses
the sampler's log-probabilities only where its tokens equal the sampler's. So the prompt is rendered
in one place, `render_prompt`, and every backend and the trainer call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: `n` completions per prompt, greedy when `temperature` is 0 (which needs n == 1).

    `batch_size` counts sequences per forward pass where the backend batches itself (transformers).
    With `keep_logprobs` the transformers backend also returns each answer's tokens and log-probability.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    batch_size: int = 32
    seed: int = 0
    keep_logprobs: bool = False

    def __post_init__(self):
        if self.temperature == 0 and self.n != 1:
            raise ValueError("greedy decoding gives one answer per prompt: use n=1 or temperature > 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampled(NamedTuple):
    """One sampled answer, with what training needs to skip the reference model's forward pass over it.

    `text` is the whole answer: it starts with the answer prefix however the backend got there.
    `token_ids` are the tokens generated after the prompt and answer prefix, up to the end of the answer
    (end-of-turn excluded). `logprob` is log p(token_ids + end-of-turn | prompt + prefix) under the model
    that sampled them, from its raw (untempered, unfiltered) logits: the DPO reference's log-probability
    of this answer, since the sampling policy is the next iteration's reference. Both are None where the
    backend does not give them (vLLM, endpoints) or was not asked to (`keep_logprobs`), and `logprob` is
    None where the sampler never scored the end-of-turn token. `truncated`: generation stopped at
    `max_new_tokens`, before the answer ended (its code block may be cut off).
    """

    text: str
    token_ids: list[int] | None = None
    logprob: float | None = None
    truncated: bool = False


def render_prompt(tokenizer, messages: Messages, answer_prefix: str) -> str:
    """The prompt as the model sees it: the chat template with the assistant's turn opened, then the prefix."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + answer_prefix


def with_system_prompt(messages: Messages, system: str) -> Messages:
    """`messages` under the configured system prompt (`prompt.system`).

    "default" leaves the chat template's own choice (SmolLM2's template writes a 20-token default system
    turn); "none" gives an empty system turn, so the template's default text is left out; any other text
    is the system turn.
    """
    if system == "default" or (messages and messages[0]["role"] == "system"):
        return messages
    return [{"role": "system", "content": "" if system == "none" else system}, *messages]
