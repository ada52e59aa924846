"""What every sampling backend takes and gives, and the one way a prompt becomes text.

The sampler, the vLLM backend and the trainer must see a prompt as the same tokens: the trainer reuses
the sampler's log-probabilities only where its tokens equal the sampler's. So the prompt is rendered
in one place, `render_prompt`, and every backend and the trainer call it.
"""

from __future__ import annotations

from dataclasses import dataclass

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
