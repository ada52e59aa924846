"""The stages every iteration shares with evaluation: keep the prompts that fit, generate completions, judge them.

Each stage writes its artifact atomically; generation also appends finished chunks to a `.partial`
file, so a crash or Ctrl-C in the middle of a long sampling stage loses at most one chunk.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

from codelutra.artifacts import read_jsonl, write_jsonl
from codelutra.candidates import Candidate, judged_candidates, sample_row, sampled_candidates, verdict_row
from codelutra.config import GenerationConfig, PromptConfig, VerifyConfig
from codelutra.console import progress_bar
from codelutra.errors import UserError
from codelutra.execution.verdict import VERDICT_KINDS, Verdict
from codelutra.generation.types import SamplingParams, render_prompt
from codelutra.tasks import Skipped
from codelutra.tasks.kinds import TaskSet

CHUNK_PROBLEMS = 64  # problems generated between two appends to the .partial file


def prompts_that_fit(
    tasks: TaskSet,
    model_path: str,
    *,
    source: str,
    prompt: PromptConfig,
    max_new_tokens: int,
    generation: GenerationConfig,
    max_length: int | None = None,
) -> tuple[TaskSet, list[Skipped]]:
    """The tasks whose prompt fits (`prompts_too_long`); the others as `Skipped`. None fitting is the user's error."""
    reasons = prompts_too_long(
        tasks, model_path, prompt=prompt, max_new_tokens=max_new_tokens, generation=generation, max_length=max_length
    )
    kept = [task for task, why in zip(tasks, reasons) if why is None]
    skipped = [Skipped(source, task.id, *why) for task, why in zip(tasks, reasons) if why is not None]
    if not kept and skipped:
        raise UserError(f"{source}: no task left: every prompt is too long ({skipped[0].reason})")
    return tasks.subset(kept), skipped


def prompts_too_long(
    tasks: TaskSet,
    model_path: str,
    *,
    prompt: PromptConfig,
    max_new_tokens: int,
    generation: GenerationConfig,
    max_length: int | None = None,
) -> list[tuple[str, str] | None]:
    """For each task, why its prompt leaves no room for `max_new_tokens` in the model's context, and its length
    (None: it fits).

    Checked before generation, where an over-long prompt fails only after allocating memory for it.
    `max_length` (training's `train.max_length`) also counts prompts that leave no token of it for an answer.
    Loading the tokenizer also tells a model path that does not load, before anything is written. The
    openai backend's model is not here to ask: its endpoint judges its own prompts.
    """
    if generation.backend == "openai" or not tasks:
        return [None] * len(tasks)
    from transformers import AutoConfig

    from codelutra.models import load_tokenizer

    try:
        tokenizer = load_tokenizer(model_path)
        context = AutoConfig.from_pretrained(model_path).max_position_embeddings
    except (OSError, ValueError) as e:
        raise UserError(f"model {model_path}: cannot be loaded ({str(e).strip().splitlines()[0]})") from None
    kind = tasks.kind
    limits = [(context - max_new_tokens, f"the model's context of {context} leaves no room for {max_new_tokens} answer tokens")]
    if max_length is not None:
        limits.append((max_length - 1, f"train.max_length is {max_length}"))
    reasons = []
    for task in tasks:
        text = render_prompt(tokenizer, kind.messages(task, prompt), kind.answer_prefix(prompt))
        length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        why = next((reason for limit, reason in limits if length > limit), None)
        reasons.append(None if why is None else (f"prompt too long: {why}", f"{length} tokens"))
    return reasons


def generate_completions(
    model_path: str,
    tasks: TaskSet,
    out_path: Path,
    *,
    prompt: PromptConfig,
    params: SamplingParams,
    description: str,
    generation: GenerationConfig = GenerationConfig(),
) -> list[list[Candidate]]:
    """The candidates of every task, in task order; written to `out_path`, resuming from `out_path.partial`.

    `model_path` is what the configured backend loads (for the openai backend, the endpoint's model name).
    With `params.keep_logprobs`, candidates also hold their tokens and log-probs (see `Candidate`), which
    spare training the reference model's pass over the samples.
    """
    if out_path.exists():
        return [sampled_candidates(row) for row in read_jsonl(out_path)]
    kind = tasks.kind
    from codelutra.generation.backends import open_backend
    from codelutra.tasks.sql_grammar import prompt_grammars

    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    done = {row["id"]: row for row in _read_partial(partial)}
    if partial.exists():
        write_jsonl(partial, list(done.values()))  # drop a line a crash cut short before appending more
    todo = [t for t in tasks if t.id not in done]
    if todo:
        with (
            open_backend(generation, model_path) as generate,
            progress_bar(description, total=len(tasks)) as advance,
            open(partial, "a", encoding="utf-8") as f,
        ):
            advance(len(tasks) - len(todo))
            for start in range(0, len(todo), CHUNK_PROBLEMS):
                chunk = todo[start : start + CHUNK_PROBLEMS]
                outputs = generate(
                    [kind.messages(t, prompt) for t in chunk],
                    answer_prefix=kind.answer_prefix(prompt),
                    params=replace(params, seed=params.seed + start),
                    progress=advance,
                    grammars=prompt_grammars(chunk, generation.constrain),
                )
                for task, completions in zip(chunk, outputs):
                    row = sample_row(task.id, completions)
                    done[task.id] = row
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
    rows = [done[t.id] for t in tasks]
    write_jsonl(out_path, rows)
    partial.unlink(missing_ok=True)
    return [sampled_candidates(row) for row in rows]


def judge_completions(
    tasks: TaskSet, sampled: list[list[Candidate]], out_path: Path, *, verify: VerifyConfig, description: str
) -> list[list[Candidate]]:
    """`sampled` (one list per problem, each of at least one candidate) judged in their kind's sandbox; write `out_path`.

    Each candidate gets the code extracted from it, its verdict and detail. A candidate cut at the token
    budget that is not `correct` is `truncated`, whatever its cut code did: the cause is the budget, not
    the code. One that is correct all the same stays `correct`, as the verdict judges the code.
    """
    kind = tasks.kind
    if out_path.exists():
        return [judged_candidates(group, row, kind.name) for group, row in zip(sampled, read_jsonl(out_path))]
    by_id = {t.id: t for t in tasks}
    flat = [c for group in sampled for c in group]
    codes = [kind.extract(c.text) for c in flat]
    checks = [kind.check(by_id[c.problem_id], code) for c, code in zip(flat, codes)]
    with progress_bar(description, total=len(checks)) as advance:
        verdicts = [_truncated(v) if c.truncated else v for v, c in zip(kind.verify(checks, verify, advance), flat)]
    judged = iter(replace(c, code=code, verdict=v.kind, detail=v.detail) for c, code, v in zip(flat, codes, verdicts))
    result = [[next(judged) for _ in group] for group in sampled]
    write_jsonl(out_path, [verdict_row(group[0].problem_id, group, kind.name) for group in result])
    return result


def _truncated(verdict: Verdict) -> Verdict:
    """The verdict on an answer cut at the token budget: `truncated` unless its code is correct all the same."""
    if verdict.kind == "correct":
        return verdict
    as_cut = f"{verdict.kind}: {verdict.detail}" if verdict.detail else verdict.kind
    return Verdict("truncated", f"cut at the token budget; as cut, {as_cut}", verdict.seconds)


def first_answer_scores(judged: list[list[Candidate]]) -> dict:
    """n, accuracy and the count of each verdict kind over each problem's first candidate (one answer per problem)."""
    counts = Counter(group[0].verdict for group in judged)
    n = len(judged)
    return {"n": n, "accuracy": counts["correct"] / n if n else 0.0, "counts": {kind: counts.get(kind, 0) for kind in VERDICT_KINDS}}


def _read_partial(path: Path) -> list[dict]:
    """Rows of a `.partial` file; a last line cut short by a crash is dropped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
