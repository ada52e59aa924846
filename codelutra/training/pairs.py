"""Preference pairs from verified samples: (prompt, correct code, incorrect code).

`iteration_pairs` is the one way a run (and every benchmark) turns an iteration's samples and verdicts
into pairs; `build_pairs` does one problem.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from codelutra.candidates import Candidate, Pair
from codelutra.config import PairConfig, PromptConfig
from codelutra.generation.types import Messages
from codelutra.tasks.kinds import TaskSet

# pairs.rejected_order "ran_first": failures that ran (a wrong result is closest to right) before those that did not.
_RAN_FIRST = {"wrong_result": 0, "timeout": 1, "memory": 1, "runtime_error": 2, "truncated": 3, "syntax_error": 4}


def iteration_pairs(tasks: TaskSet, judged: list[list[Candidate]], *, prompt: PromptConfig, cfg: PairConfig, seed: int) -> list[Pair]:
    """The pairs of one iteration: the judged candidates of `tasks`' problems, one list per problem."""
    kind = tasks.kind
    by_id = {t.id: t for t in tasks}
    pairs = []
    for candidates in judged:
        task = by_id[candidates[0].problem_id]
        pairs += build_pairs(
            kind.messages(task, prompt), candidates, kind.answer(task.gold), answer_prefix=kind.answer_prefix(prompt), cfg=cfg, seed=seed
        )
    return pairs


def build_pairs(
    prompt: Messages, candidates: Sequence[Candidate], gold_answer: str, *, answer_prefix: str = "", cfg: PairConfig, seed: int = 0
) -> list[Pair]:
    """Pair every correct candidate of one problem with every incorrect one, up to `cfg.max_per_problem`.

    Where no candidate is correct, the gold answer is the correct side (unless `cfg.gold_fallback` is off:
    then such a problem yields no pair); where none is wrong there is nothing to learn from the contrast
    and the problem yields no pair. Identical texts count once. Under the cap, pairs that bring in a
    not-yet-used incorrect candidate come first, so the cap covers as many distinct failures as it can;
    among those, `cfg.rejected_order` says which failures come first: "distinct" (in a seeded random
    order), "likely" (the ones the sampling policy gave the highest log-probability: the mistakes it
    believes in most; failures without a kept log-prob come last), or "ran_first" (a wrong result
    before a runtime error before a syntax error: the failures closest to right).

    `prompt` and `answer_prefix` (what the prompt's assistant turn starts with) travel with each pair, so
    that training scores the answers in the context they were sampled in.
    """
    if not candidates:
        return []
    problem_id = candidates[0].problem_id
    correct = _unique(c for c in candidates if c.correct)
    incorrect = _unique(c for c in candidates if not c.correct)
    chosen_source = "sample"
    if not correct:
        if not cfg.gold_fallback:
            return []
        correct, chosen_source = [Candidate(gold_answer, problem_id=problem_id, verdict="correct")], "gold"
    incorrect = [c for c in incorrect if c.text.strip() != gold_answer.strip()]
    if not incorrect:
        return []

    combos = list(itertools.product(range(len(correct)), range(len(incorrect))))
    random.Random(f"{seed}:{problem_id}").shuffle(combos)
    if cfg.rejected_order == "likely":
        neg_inf = float("-inf")
        combos.sort(key=lambda cr: -(incorrect[cr[1]].logprob or neg_inf))
    elif cfg.rejected_order == "ran_first":
        combos.sort(key=lambda cr: _RAN_FIRST.get(incorrect[cr[1]].verdict, 5))
    new_rejected, repeated_rejected, used = [], [], set()
    for c, r in combos:
        (repeated_rejected if r in used else new_rejected).append((c, r))
        used.add(r)
    return [
        Pair(problem_id, prompt, answer_prefix, correct[c], incorrect[r], chosen_source)
        for c, r in (new_rejected + repeated_rejected)[: cfg.max_per_problem]
    ]


def _unique(candidates) -> list[Candidate]:
    """The first candidate of each text (surrounding whitespace aside)."""
    seen, out = set(), []
    for c in candidates:
        key = c.text.strip()
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
