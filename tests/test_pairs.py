"""Preference pairs: correct x incorrect, gold as the correct side when no sample is correct, caps, dedup."""

from codelutra.training.pairs import build_pairs

PROMPT = [{"role": "user", "content": "q"}]
GOLD = "```sql\nSELECT 1\n```"


def _pairs(completions, verdicts, max_pairs=10):
    return build_pairs("p1", PROMPT, completions, verdicts, GOLD, max_pairs=max_pairs, seed=0)


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
