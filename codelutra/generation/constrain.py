"""Decoding under a grammar (`generation.constrain: schema`): each SQL prompt's answer may only use its database's names.

The engine is llguidance (https://github.com/guidance-ai/llguidance): its Lark dialect says what the grammar needs
(`sql_grammar`), it builds lexer states lazily, so a Spider database's grammar is ready in 0.34 s (median; at most
1.05 s), and a mask with its token step takes 0.4 ms at the median, tens of ms at the first visit of a lexer state
(`benchmarks/results/grammar-engines.md`, on the 2 shared cores); it has no dependencies (xgrammar brings triton
and a TVM runtime), and vLLM takes the same grammar text. xgrammar on the same grammar: `grammar_engines.py`.

A backend gets one grammar text (or None: unconstrained) per prompt, from `prompt_grammars`. The transformers
backend compiles each distinct grammar once per process (`_compiled`), gives every decoding row a copy of its
prompt's matcher (`Grammars`), and masks only the logits it chooses tokens from: the log-probabilities it keeps for training
(`keep_logprobs`) are the unconstrained policy's, since training's forward pass knows no grammar.

What this module uses of llguidance, in one place (pinned by tests/test_constrain.py): `llguidance.hf.from_tokenizer`,
`LLMatcher` (`grammar_from_lark`, `deep_copy`, `consume_token`, `is_error`, `get_error`, `is_stopped`) and
`llguidance.torch` (`allocate_token_bitmask`, `fill_next_token_bitmask`, and the layout of the mask they fill).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor


@functools.lru_cache(maxsize=4)
def _llg_tokenizer(tokenizer):
    """llguidance's view of a tokenizer (a second to build for SmolLM2's): once per tokenizer and process."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer)


@functools.lru_cache(maxsize=256)
def _compiled(llg_tokenizer, grammar: str):
    """The grammar's matcher at its start, built once per tokenizer and grammar (so once per database).

    A grammar that llguidance cannot build is an error that says why, in one line.
    """
    import llguidance

    try:
        matcher = llguidance.LLMatcher(llg_tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar))
    except ValueError as error:
        raise ValueError(f"grammar cannot be built: {' '.join(str(error).split())}") from None
    if matcher.is_error():
        raise ValueError(f"grammar cannot be built: {' '.join(matcher.get_error().split())}")
    return matcher


class Grammars:
    """Grammars for one tokenizer: a matcher per decoding row, and the masks of a step's rows."""

    def __init__(self, tokenizer):
        self.llg_tokenizer = _llg_tokenizer(tokenizer)

    def start(self, grammar: str | None):
        """A fresh matcher for one decoding row (None: the row is unconstrained)."""
        return None if grammar is None else _compiled(self.llg_tokenizer, grammar).deep_copy()

    def masked(self, logits: torch.Tensor, matchers: Sequence) -> torch.Tensor:
        """`logits` with every token its row's matcher forbids at -inf (a copy; rows without a matcher as they are)."""
        import llguidance.torch

        constrained = [r for r, matcher in enumerate(matchers) if matcher is not None]
        if not constrained:
            return logits
        bitmask = llguidance.torch.allocate_token_bitmask(len(constrained), self.llg_tokenizer.vocab_size)
        for i, r in enumerate(constrained):
            llguidance.torch.fill_next_token_bitmask(matchers[r], bitmask, i)
        allowed = allowed_tokens(bitmask, logits.shape[-1]).to(logits.device)
        rows = torch.tensor(constrained, device=logits.device)
        out = logits.clone()
        out[rows] = logits[rows].masked_fill(~allowed, float("-inf"))
        return out


_BITS = torch.arange(32, dtype=torch.int32)


def allowed_tokens(bitmask: torch.Tensor, vocabulary: int) -> torch.Tensor:
    """llguidance's packed mask (token t allowed where bit t % 32 of word t // 32 is set) as booleans, `vocabulary` wide.

    Its own `apply_token_bitmask_inplace` runs a `torch.compile`d kernel, compiled anew for each count of rows:
    seconds per decode step on a CPU. Tokens beyond the tokenizer's vocabulary (a padded embedding) are forbidden.
    """
    bits = ((bitmask.unsqueeze(-1) >> _BITS) & 1).bool().flatten(1)
    if bits.shape[1] < vocabulary:
        bits = torch.cat([bits, bits.new_zeros(bits.shape[0], vocabulary - bits.shape[1])], dim=1)
    return bits[:, :vocabulary]


def advance(matchers: Sequence, tokens: Sequence[int]) -> None:
    """Feed each constrained row the token chosen for it; a token its grammar refuses is a bug, raised."""
    for matcher, token in zip(matchers, tokens):
        if matcher is not None and not matcher.consume_token(token):
            raise RuntimeError(f"grammar refused token {token}: {matcher.get_error()}")


class GrammarMask(LogitsProcessor):
    """The same masks for `model.generate` (the plain path): rows are prompt-major, `n` per prompt.

    It must run before any sampling warper (top-k could leave only forbidden tokens), so the plain path hands it the
    warpers to run after it. A row's matcher stops being fed once the row ends (end-of-turn, or padding after the
    closing fence stopped it).
    """

    def __init__(self, grammars: Grammars, matchers: list, prompt_length: int, end_ids: set[int], warpers: Sequence = ()):
        self.grammars, self.matchers, self.prompt_length, self.end_ids = grammars, matchers, prompt_length, end_ids
        self.warpers = list(warpers)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.prompt_length:
            last = input_ids[:, -1].tolist()
            for r, token in enumerate(last):
                if self.matchers[r] is not None and token in self.end_ids:
                    self.matchers[r] = None  # ended: generate pads it from now on
            advance(self.matchers, last)
        scores = self.grammars.masked(scores, self.matchers)
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        return scores
