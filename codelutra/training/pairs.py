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
) -> list[dict]:
    """Pair every correct completion with every incorrect one, up to `max_pairs` per problem.

    Where no sample is correct, the gold answer is the correct side; where none is wrong there
    is nothing to learn from the contrast and the problem yields no pair. Identical texts count once.
    Under the cap, pairs that bring in a not-yet-used incorrect sample come first, so the cap
    covers as many distinct failures as it can.
    """
    correct = _unique(c for c, v in zip(completions, verdicts) if v == "correct")
    incorrect = _unique(c for c, v in zip(completions, verdicts) if v != "correct")
    kind_of = {c: v for c, v in zip(completions, verdicts)}
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
