"""Preference pairs: correct x incorrect, gold as the correct side when no sample is correct, caps, dedup."""

from codelutra.candidates import Candidate, pair_row
from codelutra.config import PairConfig
from codelutra.training.pairs import build_pairs

PROMPT = [{"role": "user", "content": "q"}]
GOLD = "```sql\nSELECT 1\n```"


def _build(completions, verdicts, *, max_pairs, seed=0, logprobs=None, **cfg) -> list[dict]:
    """The pairs of problem p1's judged candidates, as pairs.jsonl rows."""
    logprobs = logprobs or [None] * len(completions)
    candidates = [Candidate(c, logprob=lp, problem_id="p1", verdict=v) for c, v, lp in zip(completions, verdicts, logprobs)]
    return [pair_row(p) for p in build_pairs(PROMPT, candidates, GOLD, cfg=PairConfig(max_per_problem=max_pairs, **cfg), seed=seed)]


def _pairs(completions, verdicts, max_pairs=10):
    return _build(completions, verdicts, max_pairs=max_pairs, seed=0)


def test_correct_times_incorrect():
    pairs = _pairs(["a", "b", "x", "y"], ["correct", "correct", "wrong_result", "syntax_error"])
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")}
    assert all(p["chosen_source"] == "sample" and p["prompt"] == PROMPT for p in pairs)
    assert {p["rejected_kind"] for p in pairs} == {"wrong_result", "syntax_error"}


def test_gold_is_the_correct_side_when_no_sample_is_correct():
    pairs = _pairs(["x", "y"], ["no_code", "runtime_error"])
    assert [p["chosen"] for p in pairs] == [GOLD, GOLD]
    assert {p["rejected"] for p in pairs} == {"x", "y"}
    assert all(p["chosen_source"] == "gold" for p in pairs)


def test_no_pair_when_every_sample_is_correct():
    assert _pairs(["a", "b"], ["correct", "correct"]) == []


def test_identical_texts_count_once():
    pairs = _pairs(["a", "a ", "x", "x", "x\n"], ["correct", "correct", "wrong_result", "wrong_result", "wrong_result"])
    assert len(pairs) == 1


def test_a_sample_equal_to_gold_is_not_a_rejected_side():
    assert _pairs([GOLD + "\n"], ["wrong_result"]) == []


def test_cap_prefers_distinct_failures_and_is_deterministic():
    completions = ["a", "b", "c", "x", "y", "z"]
    verdicts = ["correct"] * 3 + ["wrong_result"] * 3
    pairs = _pairs(completions, verdicts, max_pairs=3)
    assert len(pairs) == 3
    assert {p["rejected"] for p in pairs} == {"x", "y", "z"}
    assert pairs == _pairs(completions, verdicts, max_pairs=3)


def test_without_gold_fallback_a_problem_with_no_correct_sample_yields_no_pair():
    completions, verdicts = ["x", "y"], ["wrong_result", "runtime_error"]
    assert _build(completions, verdicts, max_pairs=5, gold_fallback=False) == []
    mixed = _build(["a", "x"], ["correct", "wrong_result"], max_pairs=5, gold_fallback=False)
    assert [(p["chosen"], p["rejected"]) for p in mixed] == [("a", "x")]


def test_rejected_order_likely_takes_the_failures_the_policy_believes_in_most():
    completions = ["a", "x", "y", "z"]
    verdicts = ["correct", "syntax_error", "wrong_result", "runtime_error"]
    logprobs = [-1.0, -9.0, -2.0, None]  # z has no kept log-prob: last
    pairs = _build(completions, verdicts, max_pairs=3, logprobs=logprobs, rejected_order="likely")
    assert [p["rejected"] for p in pairs] == ["y", "x", "z"]


def test_rejected_order_ran_first_puts_wrong_results_before_errors():
    completions = ["a", "s", "r", "w"]
    verdicts = ["correct", "syntax_error", "runtime_error", "wrong_result"]
    for seed in range(5):
        pairs = _build(completions, verdicts, max_pairs=3, seed=seed, rejected_order="ran_first")
        assert [p["rejected"] for p in pairs] == ["w", "r", "s"]
