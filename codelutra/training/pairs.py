"""Preference pairs from verified samples: (prompt, correct code, incorrect code)."""

from __future__ import annotations

import itertools
import random


def build_pairs(
    problem_id: str,
    prompt: list[dict[str, str]],
    completions: list[str],
    verdicts: list[str],
    gold_answer: str,
    *,
    max_pairs: int,
    seed: int = 0,
    answer_prefix: str = "",
    token_ids: list[list[int] | None] | None = None,
    logprobs: list[float | None] | None = None,
) -> list[dict]:
    """Pair every correct completion with every incorrect one, up to `max_pairs` per problem.

    Where no sample is correct, the gold answer is the correct side; where none is wrong there
    is nothing to learn from the contrast and the problem yields no pair. Identical texts count once.
    Under the cap, pairs that bring in a not-yet-used incorrect sample come first, so the cap
    covers as many distinct failures as it can.

    `answer_prefix` (what the prompt's assistant turn starts with) and the sampler's `token_ids` and
    `logprobs` per completion travel with each pair (`<side>_sample`: None for gold code), so that
    training scores the answers in the context they were sampled in and reuses the reference log-probs.
    """
    correct = _unique(c for c, v in zip(completions, verdicts) if v == "correct")
    incorrect = _unique(c for c, v in zip(completions, verdicts) if v != "correct")
    kind_of = {c: v for c, v in zip(completions, verdicts)}
    sampled = {}  # text -> the sampler's tokens and log-prob (the first of identical texts)
    if token_ids is not None and logprobs is not None:
        for c, ids, lp in zip(completions, token_ids, logprobs):
            sampled.setdefault(c, {"token_ids": ids, "logprob": lp})
    chosen_source = "sample"
    if not correct:
        correct, chosen_source = [gold_answer], "gold"
    incorrect = [c for c in incorrect if c.strip() != gold_answer.strip()]
    if not incorrect:
        return []

    combos = list(itertools.product(range(len(correct)), range(len(incorrect))))
    random.Random(f"{seed}:{problem_id}").shuffle(combos)
    new_rejected, repeated_rejected, used = [], [], set()
    for c, r in combos:
        (repeated_rejected if r in used else new_rejected).append((c, r))
        used.add(r)
    return [
        {
            "id": problem_id,
            "prompt": prompt,
            "chosen": correct[c],
            "rejected": incorrect[r],
            "chosen_source": chosen_source,
            "rejected_kind": kind_of[incorrect[r]],
            "answer_prefix": answer_prefix,
            "chosen_sample": sampled.get(correct[c]) if chosen_source == "sample" else None,
            "rejected_sample": sampled.get(incorrect[r]),
        }
        for c, r in (new_rejected + repeated_rejected)[:max_pairs]
    ]


def _unique(texts) -> list[str]:
    seen, out = set(), []
    for t in texts:
        key = t.strip()
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out
