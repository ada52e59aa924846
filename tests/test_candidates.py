"""A candidate meets a run's files in one place: rows in the formats runs already hold read back, and write back, unchanged."""

from __future__ import annotations

from codelutra.candidates import (
    Candidate,
    judged_candidates,
    pair_of_row,
    pair_row,
    sample_row,
    sampled_candidates,
    verdict_row,
)

# Rows as runs write them today (and as older runs wrote them: no `truncated`, no tokens, no answer prefix).
SAMPLES = {
    "id": "q7",
    "completions": ["```sql\nSELECT 1\n```", "```sql\nSELECT name FROM"],
    "truncated": [False, True],
    "token_ids": [[5, 6, 7], [8, 9]],
    "logprobs": [-1.5, None],
}
VERDICTS = {
    "id": "q7",
    "sql": ["SELECT 1", "SELECT name FROM"],
    "verdicts": ["correct", "truncated"],
    "details": ["", "cut at the token budget; as cut, syntax_error: near FROM"],
}
PAIR = {
    "id": "q7",
    "prompt": [{"role": "user", "content": "q"}],
    "chosen": "```sql\nSELECT 1\n```",
    "rejected": "```sql\nSELECT name FROM",
    "chosen_source": "sample",
    "rejected_kind": "truncated",
    "answer_prefix": "```sql\n",
    "chosen_sample": {"token_ids": [5, 6, 7], "logprob": -1.5},
    "rejected_sample": {"token_ids": [8, 9], "logprob": None},
}


def test_todays_rows_read_as_candidates_and_write_back_unchanged():
    sampled = sampled_candidates(SAMPLES)
    assert sampled[1] == Candidate("```sql\nSELECT name FROM", token_ids=[8, 9], logprob=None, truncated=True, problem_id="q7")
    judged = judged_candidates(sampled, VERDICTS, "sql")
    assert [(c.code, c.verdict, c.correct) for c in judged] == [("SELECT 1", "correct", True), ("SELECT name FROM", "truncated", False)]
    assert sample_row("q7", judged) == SAMPLES
    assert verdict_row("q7", judged, "sql") == VERDICTS
    pair = pair_of_row(PAIR)
    assert (pair.chosen.token_ids, pair.chosen.logprob, pair.rejected.verdict, pair.rejected.truncated) == ([5, 6, 7], -1.5, "truncated", False)
    assert pair_row(pair) == PAIR


def test_rows_of_older_runs_read_with_what_they_lack_left_empty():
    [candidate] = sampled_candidates({"id": "q1", "completions": ["```sql\nSELECT 2\n```"]})
    assert (candidate.truncated, candidate.token_ids, candidate.logprob) == (False, None, None)
    assert sample_row("q1", [candidate]) == {"id": "q1", "completions": ["```sql\nSELECT 2\n```"], "truncated": [False]}
    pair = pair_of_row({"prompt": [{"role": "user", "content": "q"}], "chosen": "SELECT 1", "rejected": "SELECT 2"})
    assert (pair.answer_prefix, pair.chosen_source, pair.chosen.token_ids, pair.rejected.logprob) == ("", "sample", None, None)


def test_gold_code_on_the_chosen_side_keeps_no_sampler_values():
    pair = pair_of_row({**PAIR, "chosen": "```sql\nSELECT 1 AS x\n```", "chosen_source": "gold", "chosen_sample": None})
    assert pair.chosen.token_ids is None and pair_row(pair)["chosen_sample"] is None
