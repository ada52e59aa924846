"""Execution-guided voting for SQL: sample several queries, run them, answer with the result most agree on.

The strongest small text-to-SQL systems (OmniSQL, Arctic-Text2SQL-R1, SLM-SQL) do this at inference
time, and it fixes what greedy decoding of a small model gets wrong most: queries that name a column
or table that does not exist. Candidates run in the sandbox against the problem's database only;
the gold query is never consulted, so the voted answer is what a user without a gold answer gets.

Rules: candidates without SQL or whose query fails drop out; the others are grouped by equal results,
where "equal" is the verifier's own comparison (`results_match`: multisets unless both queries order
their output, column order free, floats to 6 significant digits). The answer comes from the largest
group; ties go to the group holding the highest log-probability, and within the group the candidate
with the highest log-probability wins (then the earliest sampled). A log-probability the backend did
not give (vLLM, an endpoint) counts as lowest, so those ties go to sample order. When no candidate
runs, the answer is the most probable candidate anyway: it fails, and its verdict says how.

Python tasks are not voted on: their candidates are judged only by graded tests, and without those
tests there is no result to compare candidates by (running a function needs inputs the task does not give).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codelutra.artifacts import read_jsonl, write_jsonl
from codelutra.candidates import Candidate
from codelutra.config import EvalConfig, GenerationConfig, PromptConfig, VerifyConfig
from codelutra.errors import UserError
from codelutra.execution.canonical import sql_key
from codelutra.execution.sql import QueryResult, run_queries
from codelutra.execution.sql_match import gold_is_ordered, results_match
from codelutra.generation.types import SamplingParams
from codelutra.layout import EvalFiles
from codelutra.loop.stages import (
    first_answer_scores,
    generate_completions,
    judge_completions,
)
from codelutra.tasks.kinds import SQL, TaskSet

PYTHON_REFUSAL = (
    "voting needs SQL tasks: Python candidates are judged only by graded tests, and without the tests "
    "there is no result to compare candidates by; evaluate Python tasks without voting (eval.vote=0)"
)


@dataclass(frozen=True)
class Ballot:
    """One sampled candidate: its query, the model's log-probability of it, and what running it gave."""

    sql: str | None  # None: the completion held no SQL
    logprob: float | None  # None: the backend gave none
    result: QueryResult | None  # None when there was no SQL to run

    @property
    def ran(self) -> bool:
        return self.result is not None and self.result.kind == "ok"


@dataclass(frozen=True)
class Vote:
    chosen: int  # index of the answering candidate
    group_sizes: list[int]  # sizes of the groups of equal results, the chosen group first, then largest first
    failed: int  # candidates that held no SQL or whose query failed


def require_votable(tasks: TaskSet, vote: int) -> None:
    """Refuse voting on a task set it cannot apply to (before any model is loaded)."""
    if vote and tasks.kind is not SQL:
        raise UserError(f"--vote / eval.vote: {PYTHON_REFUSAL}")


def choose(ballots: Sequence[Ballot]) -> Vote:
    """The voted candidate among `ballots` (see the module's docstring for the rules)."""
    if not ballots:
        raise ValueError("no candidates to vote on")
    score = [_logprob(b) for b in ballots]
    groups: list[list[int]] = []
    for index, ballot in enumerate(ballots):
        if not ballot.ran:
            continue
        for group in groups:
            if _same_result(ballots[group[0]], ballot):
                group.append(index)
                break
        else:
            groups.append([index])
    failed = len(ballots) - sum(len(g) for g in groups)
    if not groups:
        best = max(range(len(ballots)), key=lambda i: (score[i], -i))
        return Vote(best, [], failed)
    # max() keeps the first of equal keys, and groups are in order of their first member: earliest wins last ties.
    ranked = sorted(groups, key=lambda g: (len(g), max(score[i] for i in g)), reverse=True)
    winner = ranked[0]
    best = max(winner, key=lambda i: (score[i], -i))
    return Vote(best, [len(g) for g in ranked], failed)


def _same_result(a: Ballot, b: Ballot) -> bool:
    """The verifier's comparison; row order counts only when both queries order their output."""
    ordered = gold_is_ordered(a.sql) and gold_is_ordered(b.sql)
    return results_match(a.result.rows, b.result.rows, ordered=ordered)


def _logprob(ballot: Ballot) -> float:
    return -math.inf if ballot.logprob is None else ballot.logprob


def cast_ballots(
    problems: Sequence[tuple[str, Sequence[str | None], Sequence[float | None]]], *, timeout_s: float, workers: int | None
) -> list[list[Ballot]]:
    """Run every candidate of every (db_path, queries, log-probs) problem in one sandbox batch.

    Each distinct query (`sql_key`) runs once per database, as in the verifier.
    """
    distinct: dict[tuple[str, str], int] = {}
    queries: list[tuple[str, str]] = []
    for db_path, sqls, _ in problems:
        for sql in sqls:
            if sql and (db_path, sql_key(sql)) not in distinct:
                distinct[(db_path, sql_key(sql))] = len(queries)
                queries.append((db_path, sql))
    results = run_queries(queries, timeout_s=timeout_s, workers=workers)
    return [
        [
            Ballot(sql, logprob, results[distinct[(db_path, sql_key(sql))]] if sql else None)
            for sql, logprob in zip(sqls, logprobs)
        ]
        for db_path, sqls, logprobs in problems
    ]


def evaluate_voted(
    model_path: str,
    tasks: TaskSet,
    files: EvalFiles,
    *,
    prompt: PromptConfig,
    eval_cfg: EvalConfig,
    verify: VerifyConfig,
    label: str,
    generation: GenerationConfig,
) -> dict:
    """Voted accuracy over `eval_cfg.vote` candidates per task; the `voted` part of eval.json.

    Artifacts (each stage resumable): vote_samples.jsonl (the candidates and their log-probs),
    vote_choices.jsonl (the chosen candidate, its query and the group sizes per task), and
    vote_verdicts.jsonl (the chosen answer judged against the gold, as greedy answers are).
    """
    require_votable(tasks, eval_cfg.vote)
    start = time.monotonic()
    sampled = generate_completions(
        model_path,
        tasks,
        files.vote_samples,
        prompt=prompt,
        params=SamplingParams(
            n=eval_cfg.vote,
            temperature=eval_cfg.vote_temperature,
            top_p=eval_cfg.vote_top_p,
            max_new_tokens=tasks.kind.max_new_tokens(eval_cfg.max_new_tokens),
            batch_size=eval_cfg.batch_size,
            keep_logprobs=True,
        ),
        description=f"{label}: sampling {eval_cfg.vote} candidates to vote on",
        generation=generation,
    )
    choices = _choices(tasks, sampled, files.vote_choices, verify)
    chosen = [[candidates[choice["chosen"]]] for candidates, choice in zip(sampled, choices)]
    judged = judge_completions(tasks, chosen, files.vote_verdicts, verify=verify, description=f"{label}: verifying voted answers")
    return {
        "candidates": eval_cfg.vote,
        "temperature": eval_cfg.vote_temperature,
        **first_answer_scores(judged),
        "none_ran": sum(1 for c in choices if not c["group_sizes"]),
        "seconds": round(time.monotonic() - start, 1),
    }


def _choices(tasks: TaskSet, sampled: list[list[Candidate]], out_path: Path, verify: VerifyConfig) -> list[dict]:
    if out_path.exists():
        return read_jsonl(out_path)
    by_id = {t.id: t for t in tasks}
    problems = []
    for candidates in sampled:
        sqls = [SQL.extract(c.text) for c in candidates]
        problems.append((by_id[candidates[0].problem_id].db_path, sqls, [c.logprob for c in candidates]))
    ballots = cast_ballots(problems, timeout_s=verify.timeout_s, workers=verify.workers)
    rows = []
    for candidates, (_, sqls, _), problem_ballots in zip(sampled, problems, ballots):
        vote = choose(problem_ballots)
        rows.append({
            "id": candidates[0].problem_id,
            "chosen": vote.chosen,
            "sql": sqls[vote.chosen],
            "completion": candidates[vote.chosen].text,
            "group_sizes": vote.group_sizes,
            "failed": vote.failed,
        })
    write_jsonl(out_path, rows)
    return rows
