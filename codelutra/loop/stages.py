"""The stages every iteration shares with evaluation: generate completions, then judge them by execution.

Each stage writes its artifact atomically; generation also appends finished chunks to a `.partial`
file, so a crash or Ctrl-C in the middle of a long sampling stage loses at most one chunk.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from codelutra.artifacts import read_jsonl, write_jsonl
from codelutra.config import GenerationConfig, PromptConfig, VerifyConfig
from codelutra.console import progress_bar
from codelutra.generation.types import Sampled, SamplingParams
from codelutra.tasks import Task
from codelutra.tasks.kinds import kind_of

CHUNK_PROBLEMS = 64  # problems generated between two appends to the .partial file


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
    verdicts and details.
    """
    if out_path.exists():
        return read_jsonl(out_path)
    kind = kind_of(tasks)
    by_id = {t.id: t for t in tasks}
    checks, codes, owners = [], [], []
    for row in samples:
        task = by_id[row["id"]]
        for completion in row["completions"]:
            code = kind.extract(completion)
            checks.append(kind.check(task, code))
            codes.append(code)
            owners.append(row["id"])
    with progress_bar(description, total=len(checks)) as advance:
        verdicts = kind.verify(checks, verify, advance)
    rows: dict[str, dict] = {row["id"]: {"id": row["id"], kind.name: [], "verdicts": [], "details": []} for row in samples}
    for owner, code, verdict in zip(owners, codes, verdicts):
        rows[owner][kind.name].append(code)
        rows[owner]["verdicts"].append(verdict.kind)
        rows[owner]["details"].append(verdict.detail)
    result = [rows[row["id"]] for row in samples]
    write_jsonl(out_path, result)
    return result


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
