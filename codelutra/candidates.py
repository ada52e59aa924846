"""One answer of the model to one problem, from sampling to training, and the one place it meets a run's files.

A `Candidate` is made by a sampling backend (its text, whether it was cut at the token budget, and where
kept, its tokens and log-probability), judged by the verification stage (the code found in it, the
verdict and its detail), and read as it is by pairing, voting and training. A `Pair` is two candidates of
one problem. The rows of samples.jsonl, verdicts.jsonl and pairs.jsonl are written and read here only,
in the formats that runs on disk already hold, so that an old run resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from codelutra.artifacts import read_jsonl, write_jsonl


@dataclass(frozen=True)
class Candidate:
    """One answer, with what training needs to skip the reference model's forward pass over it.

    `text` is the whole answer: it starts with the answer prefix however the backend got there.
    `token_ids` are the tokens generated after the prompt and answer prefix, up to the end of the answer
    (end-of-turn excluded). `logprob` is log p(token_ids + end-of-turn | prompt + prefix) under the model
    that sampled them, from its raw (untempered, unfiltered) logits: the DPO reference's log-probability
    of this answer, since the sampling policy is the next iteration's reference. Both are None where the
    backend does not give them (vLLM, endpoints) or was not asked to (`keep_logprobs`), and `logprob` is
    None where the sampler never scored the end-of-turn token. `truncated`: generation stopped at
    `max_new_tokens`, before the answer ended (its code block may be cut off).

    `problem_id` is set by the sampling stage (a backend does not know it); `code`, `verdict` (a kind of
    `codelutra.execution.verdict`) and `detail` by the verification stage (`verdict` None: not judged).
    """

    text: str
    token_ids: list[int] | None = None
    logprob: float | None = None
    truncated: bool = False
    problem_id: str = ""
    code: str | None = None
    verdict: str | None = None
    detail: str = ""

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"


@dataclass(frozen=True)
class Pair:
    """A preference pair of one problem: a correct answer (sampled, or the gold code) and an incorrect one.

    `prompt` and `answer_prefix` are what the answers were sampled after, so that training scores them in
    that context; the candidates carry the sampler's tokens and log-probs (none for gold code).
    """

    problem_id: str
    prompt: list[dict[str, str]]  # chat messages
    answer_prefix: str
    chosen: Candidate
    rejected: Candidate
    chosen_source: str  # "sample", or "gold" where no sample was correct


def sample_row(problem_id: str, candidates: Sequence[Candidate]) -> dict:
    """A row of samples.jsonl: texts and which were cut at the token budget, and where kept, tokens and log-probs."""
    row = {
        "id": problem_id,
        "completions": [c.text for c in candidates],
        "truncated": [c.truncated for c in candidates],
    }
    if any(c.token_ids is not None for c in candidates):
        row["token_ids"] = [c.token_ids for c in candidates]
        row["logprobs"] = [c.logprob for c in candidates]
    return row


def sampled_candidates(row: dict) -> list[Candidate]:
    """The candidates of a samples.jsonl row; rows written before `truncated` or tokens were kept lack them."""
    texts = row["completions"]
    truncated = row.get("truncated") or [False] * len(texts)
    token_ids = row.get("token_ids") or [None] * len(texts)
    logprobs = row.get("logprobs") or [None] * len(texts)
    return [
        Candidate(text, token_ids=ids, logprob=lp, truncated=cut, problem_id=row["id"])
        for text, cut, ids, lp in zip(texts, truncated, token_ids, logprobs)
    ]


def verdict_row(problem_id: str, candidates: Sequence[Candidate], code_key: str) -> dict:
    """A row of verdicts.jsonl: the code found in each candidate under its kind's name ("sql", "python"), verdicts, details."""
    return {
        "id": problem_id,
        code_key: [c.code for c in candidates],
        "verdicts": [c.verdict for c in candidates],
        "details": [c.detail for c in candidates],
    }


def judged_candidates(candidates: Sequence[Candidate], row: dict, code_key: str) -> list[Candidate]:
    """`candidates` (a samples.jsonl row's) judged as their verdicts.jsonl `row` says."""
    return [
        replace(c, code=code, verdict=verdict, detail=detail)
        for c, code, verdict, detail in zip(candidates, row[code_key], row["verdicts"], row["details"])
    ]


def pair_row(pair: Pair) -> dict:
    """A row of pairs.jsonl: the texts, where the chosen side came from, and the sampler's tokens and log-prob of each side."""
    return {
        "id": pair.problem_id,
        "prompt": pair.prompt,
        "chosen": pair.chosen.text,
        "rejected": pair.rejected.text,
        "chosen_source": pair.chosen_source,
        "rejected_kind": pair.rejected.verdict,
        "answer_prefix": pair.answer_prefix,
        "chosen_sample": _kept(pair.chosen) if pair.chosen_source == "sample" else None,
        "rejected_sample": _kept(pair.rejected),
    }


def pair_of_row(row: dict) -> Pair:
    """The pair of a pairs.jsonl row; rows written before the answer prefix and kept log-probs were stored lack them."""

    def side(name: str, verdict: str | None) -> Candidate:
        kept = row.get(f"{name}_sample") or {}
        return Candidate(row[name], kept.get("token_ids"), kept.get("logprob"), problem_id=row.get("id", ""), verdict=verdict)

    return Pair(
        problem_id=row.get("id", ""),
        prompt=row["prompt"],
        answer_prefix=row.get("answer_prefix", ""),
        chosen=side("chosen", "correct"),
        rejected=side("rejected", row.get("rejected_kind")),
        chosen_source=row.get("chosen_source", "sample"),
    )


def unsolved_problems(verdicts_path: Path) -> set[str]:
    """The problems of a verdicts.jsonl file that no candidate got right."""
    return {row["id"] for row in read_jsonl(verdicts_path) if "correct" not in row["verdicts"]}


def write_pairs(path: Path, pairs: Sequence[Pair]) -> None:
    write_jsonl(path, [pair_row(p) for p in pairs])


def read_pairs(path: Path) -> list[Pair]:
    return [pair_of_row(row) for row in read_jsonl(path)]


def _kept(candidate: Candidate) -> dict | None:
    """The sampler's tokens and log-prob of a candidate, as pairs.jsonl holds them (None: the sampler kept neither)."""
    if candidate.token_ids is None and candidate.logprob is None:
        return None
    return {"token_ids": candidate.token_ids, "logprob": candidate.logprob}
