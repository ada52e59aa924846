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
from codelutra.config import GenerationConfig, PromptConfig, VerifyConfig
from codelutra.console import progress_bar
from codelutra.errors import UserError
from codelutra.execution.verdict import VERDICT_KINDS, Verdict, verdict_kind
from codelutra.generation.types import Sampled, SamplingParams, render_prompt
from codelutra.tasks import Skipped, Task
from codelutra.tasks.kinds import kind_of

CHUNK_PROBLEMS = 64  # problems generated between two appends to the .partial file


def prompts_that_fit(
    tasks: list[Task],
    model_path: str,
    *,
    source: str,
    prompt: PromptConfig,
    max_new_tokens: int,
    generation: GenerationConfig,
    max_length: int | None = None,
) -> tuple[list[Task], list[Skipped]]:
    """The tasks whose prompt leaves `max_new_tokens` of room in the model's context; the others as `Skipped`.

    Checked before generation, where an over-long prompt fails only after allocating memory for it.
    `max_length` (training's `train.max_length`) also skips prompts that leave no token of it for an answer.
    Loading the tokenizer also tells a model path that does not load, before anything is written. The
    openai backend's model is not here to ask: its endpoint judges its own prompts.
    """
    if generation.backend == "openai" or not tasks:
        return tasks, []
    from transformers import AutoConfig

    from codelutra.models import load_tokenizer

    try:
        tokenizer = load_tokenizer(model_path)
        context = AutoConfig.from_pretrained(model_path).max_position_embeddings
    except (OSError, ValueError) as e:
        raise UserError(f"model {model_path}: cannot be loaded ({str(e).strip().splitlines()[0]})") from None
    kind = kind_of(tasks)
    limits = [(context - max_new_tokens, f"the model's context of {context} leaves no room for {max_new_tokens} answer tokens")]
    if max_length is not None:
        limits.append((max_length - 1, f"train.max_length is {max_length}"))
    kept, skipped = [], []
    for task in tasks:
        text = render_prompt(tokenizer, kind.messages(task, prompt), kind.answer_prefix(prompt))
        length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        why = next((reason for limit, reason in limits if length > limit), None)
        if why is None:
            kept.append(task)
        else:
            skipped.append(Skipped(source, task.id, f"prompt too long: {length} tokens, and {why}"))
    if not kept:
        raise UserError(f"{source}: no task left: every prompt is too long ({skipped[0].reason})")
    return kept, skipped


def generate_completions(
    model_path: str,
    tasks: list[Task],
    out_path: Path,
    *,
    prompt: PromptConfig,
    params: SamplingParams,
    description: str,
    generation: GenerationConfig = GenerationConfig(),
) -> list[dict]:
    """Write `out_path` (JSONL rows of `sample_row`) for every task, resuming from `out_path.partial`.

    `model_path` is what the configured backend loads (for the openai backend, the endpoint's model name).
    With `params.keep_logprobs`, rows also hold each completion's `token_ids` and `logprobs` (see
    `Sampled`), which spare training the reference model's pass over the samples.
    """
    if out_path.exists():
        return read_jsonl(out_path)
    kind = kind_of(tasks)
    from codelutra.generation.backends import open_backend
    from codelutra.generation.constrain import prompt_grammars

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
    return rows


def sample_row(task_id: str, completions: list[Sampled]) -> dict:
    """A row of samples.jsonl: texts and which were cut at the token budget, and where kept, tokens and log-probs."""
    row = {
        "id": task_id,
        "completions": [c.text for c in completions],
        "truncated": [c.truncated for c in completions],
    }
    if any(c.token_ids is not None for c in completions):
        row["token_ids"] = [c.token_ids for c in completions]
        row["logprobs"] = [c.logprob for c in completions]
    return row


def judge_completions(
    tasks: list[Task], samples: list[dict], out_path: Path, *, verify: VerifyConfig, description: str
) -> list[dict]:
    """Extract the code from every completion and judge it in its kind's sandbox; write `out_path`.

    Each row: id, the code extracted from each completion under the kind's name ("sql", "python"),
    verdicts and details. A completion cut at the token budget (samples.jsonl's `truncated`; rows written
    before it existed count as not cut) that is not `correct` is `truncated`, whatever its cut code did:
    the cause is the budget, not the code. One that is correct all the same stays `correct`, as the
    verdict judges the code.
    """
    if out_path.exists():
        return read_jsonl(out_path)
    kind = kind_of(tasks)
    by_id = {t.id: t for t in tasks}
    checks, codes, owners, cut = [], [], [], []
    for row in samples:
        task = by_id[row["id"]]
        for completion, truncated in zip(row["completions"], row.get("truncated") or [False] * len(row["completions"])):
            code = kind.extract(completion)
            checks.append(kind.check(task, code))
            codes.append(code)
            owners.append(row["id"])
            cut.append(truncated)
    with progress_bar(description, total=len(checks)) as advance:
        verdicts = [_truncated(v) if truncated else v for v, truncated in zip(kind.verify(checks, verify, advance), cut)]
    rows: dict[str, dict] = {row["id"]: {"id": row["id"], kind.name: [], "verdicts": [], "details": []} for row in samples}
    for owner, code, verdict in zip(owners, codes, verdicts):
        rows[owner][kind.name].append(code)
        rows[owner]["verdicts"].append(verdict.kind)
        rows[owner]["details"].append(verdict.detail)
    result = [rows[row["id"]] for row in samples]
    write_jsonl(out_path, result)
    return result


def _truncated(verdict: Verdict) -> Verdict:
    """The verdict on an answer cut at the token budget: `truncated` unless its code is correct all the same."""
    if verdict.kind == "correct":
        return verdict
    as_cut = f"{verdict.kind}: {verdict.detail}" if verdict.detail else verdict.kind
    return Verdict("truncated", f"cut at the token budget; as cut, {as_cut}", verdict.seconds)


def first_answer_scores(verdict_rows: list[dict]) -> dict:
    """n, accuracy and the count of each verdict kind over each row's first verdict (one answer per problem)."""
    counts = Counter(verdict_kind(row["verdicts"][0]) for row in verdict_rows)
    n = len(verdict_rows)
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
