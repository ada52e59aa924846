"""Preference pairs from verified samples: (prompt, correct code, incorrect code).

`iteration_pairs` is the one way a run (and every benchmark) turns an iteration's samples and verdicts
into pairs; `build_pairs` does one problem.
"""

from __future__ import annotations

import itertools
import random

from codelutra.config import PairConfig, PromptConfig
from codelutra.tasks.kinds import TaskSet

# pairs.rejected_order "ran_first": failures that ran (a wrong result is closest to right) before those that did not.
_RAN_FIRST = {"wrong_result": 0, "timeout": 1, "memory": 1, "runtime_error": 2, "truncated": 3, "syntax_error": 4}


def iteration_pairs(
    tasks: TaskSet, samples: list[dict], verdicts: list[dict], *, prompt: PromptConfig, cfg: PairConfig, seed: int
) -> list[dict]:
    """The pairs of one iteration: samples.jsonl and verdicts.jsonl rows (same order) of `tasks`' problems."""
    kind = tasks.kind
    by_id = {t.id: t for t in tasks}
    pairs = []
    for sample, verdict in zip(samples, verdicts):
        task = by_id[sample["id"]]
        pairs += build_pairs(
            task.id,
            kind.messages(task, prompt),
            sample["completions"],
            verdict["verdicts"],
            kind.answer(task.gold),
            max_pairs=cfg.max_per_problem,
            seed=seed,
            answer_prefix=kind.answer_prefix(prompt),
            token_ids=sample.get("token_ids"),
            logprobs=sample.get("logprobs"),
            gold_fallback=cfg.gold_fallback,
            rejected_order=cfg.rejected_order,
        )
    return pairs


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
    gold_fallback: bool = True,
    rejected_order: str = "distinct",
) -> list[dict]:
    """Pair every correct completion with every incorrect one, up to `max_pairs` per problem.

    Where no sample is correct, the gold answer is the correct side (unless `gold_fallback` is off: then
    such a problem yields no pair); where none is wrong there is nothing to learn from the contrast and
    the problem yields no pair. Identical texts count once. Under the cap, pairs that bring in a
    not-yet-used incorrect sample come first, so the cap covers as many distinct failures as it can;
    among those, `rejected_order` says which failures come first: "distinct" (in a seeded random
    order), "likely" (the ones the sampling policy gave the highest log-probability: the mistakes it
    believes in most; failures without a kept log-prob come last), or "ran_first" (a wrong result
    before a runtime error before a syntax error: the failures closest to right).

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
        if not gold_fallback:
            return []
        correct, chosen_source = [gold_answer], "gold"
    incorrect = [c for c in incorrect if c.strip() != gold_answer.strip()]
    if not incorrect:
        return []

    combos = list(itertools.product(range(len(correct)), range(len(incorrect))))
    random.Random(f"{seed}:{problem_id}").shuffle(combos)
    if rejected_order == "likely":
        neg_inf = float("-inf")
        combos.sort(key=lambda cr: -((sampled.get(incorrect[cr[1]]) or {}).get("logprob") or neg_inf))
    elif rejected_order == "ran_first":
        combos.sort(key=lambda cr: _RAN_FIRST.get(kind_of[incorrect[cr[1]]], 5))
    elif rejected_order != "distinct":
        raise ValueError(f"unknown rejected_order {rejected_order!r}")
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
