"""Held-out evaluation: greedy decoding, execution accuracy and the breakdown by verdict kind."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

from codelutra.artifacts import read_json, write_json
from codelutra.config import EvalConfig, GenerationConfig, PromptConfig, VerifyConfig
from codelutra.errors import UserError
from codelutra.execution.verdict import VERDICT_KINDS, verdict_kind
from codelutra.generation.types import SamplingParams
from codelutra.loop.layout import EvalFiles
from codelutra.loop.stages import (
    first_answer_scores,
    generate_completions,
    judge_completions,
)
from codelutra.loop.vote import evaluate_voted, require_votable
from codelutra.tasks import Task
from codelutra.tasks.kinds import kind_of


def evaluate_model(
    model_path: str,
    tasks: list[Task],
    out_dir: Path,
    *,
    prompt: PromptConfig,
    eval_cfg: EvalConfig,
    verify: VerifyConfig,
    label: str,
    generation: GenerationConfig = GenerationConfig(),
) -> dict:
    """Evaluate `model_path` on `tasks`; write `out_dir/eval.json` (accuracy, n, counts) and its samples.

    With `eval_cfg.vote`, eval.json also holds `voted` (`codelutra.loop.vote.evaluate_voted`).

    `generation` says where the completions come from; for the openai backend `model_path` is the
    endpoint's model name. A folder is reused (its results, or its samples so far) only for the same
    model, tasks and settings; otherwise this raises `UserError` before anything is written.
    """
    files = EvalFiles(Path(out_dir))
    require_votable(tasks, eval_cfg.vote)  # before the folder is claimed: a refused command writes nothing
    max_new_tokens = kind_of(tasks).max_new_tokens(eval_cfg.max_new_tokens)
    _claim_eval_dir(files, _inputs(model_path, tasks, prompt, eval_cfg, max_new_tokens, verify, generation))
    if files.result.exists():
        return _with_current_kinds(read_json(files.result))
    start = time.monotonic()
    samples = generate_completions(
        model_path,
        tasks,
        files.samples,
        prompt=prompt,
        params=SamplingParams(max_new_tokens=max_new_tokens, batch_size=eval_cfg.batch_size),
        description=f"{label}: generating (greedy)",
        generation=generation,
    )
    verdicts = judge_completions(
        tasks, samples, files.verdicts, verify=verify, description=f"{label}: verifying"
    )
    result = {
        "model": model_path,
        **first_answer_scores(verdicts),
        "seconds": round(time.monotonic() - start, 1),
        "match": verify.match,  # the scoring rule (SQL tasks; see execution/sql_match.py)
        "variants": verify.variants,  # perturbed database copies a SQL answer also had to match on
    }
    if eval_cfg.vote:  # `accuracy` stays the greedy one; the voted answers are reported beside it
        settings = dict(prompt=prompt, eval_cfg=eval_cfg, verify=verify, label=label, generation=generation)
        result["voted"] = evaluate_voted(model_path, tasks, files, **settings)
    write_json(files.result, result)
    return result


def _inputs(model_path, tasks, prompt, eval_cfg, max_new_tokens, verify, generation) -> dict:
    """What the results of an evaluation depend on; parallelism (workers, batch sizes, concurrency) is left out."""
    problems = json.dumps([(t.id, t.question, t.gold, t.db_path, t.tests, t.code_context) for t in tasks])
    return {
        "model": model_path,
        "tasks": {"n": len(tasks), "sha256": hashlib.sha256(problems.encode()).hexdigest()},
        "settings": {
            "prompt": prompt.model_dump(mode="json"),
            "eval": {**eval_cfg.model_dump(mode="json", exclude={"batch_size"}), "max_new_tokens": max_new_tokens},
            "verify": verify.model_dump(mode="json", exclude={"workers"}),
            # constrain only where on, so that folders written before it existed still match an unconstrained evaluation
            "generation": generation.model_dump(
                mode="json", include={"backend", "base_url"} | ({"constrain"} if generation.constrain != "none" else set())
            ),
        },
    }


def _claim_eval_dir(files: EvalFiles, inputs: dict) -> None:
    """Record what the folder evaluates; refuse a folder that holds an evaluation of something else.

    A folder from before `eval_inputs.json` existed is checked by what its eval.json says (model, n).
    """
    path = files.inputs
    if path.exists():
        differs = _differences(read_json(path), inputs)
    elif files.result.exists():
        old = read_json(files.result)
        differs = _differences({"model": old.get("model"), "n": old.get("n")}, {"model": inputs["model"], "n": inputs["tasks"]["n"]})
    else:
        differs = []
    if differs:
        raise UserError(
            f"{files.dir}: holds an evaluation with a different {', '.join(differs)}; "
            "choose another output folder (--output) or delete this one to start fresh"
        )
    if not path.exists():
        write_json(path, inputs)


def _differences(held: dict, now: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested mappings (`tasks` compared whole)."""
    keys = sorted(held.keys() | now.keys())
    differs = []
    for key in keys:
        old, new = held.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key != "tasks":
            differs += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differs.append(prefix + key)
    return differs


def _with_current_kinds(result: dict) -> dict:
    """An eval.json written by an older version, its verdict counts under today's kind names."""
    counts: Counter = Counter()
    for kind, n in result.get("counts", {}).items():
        counts[verdict_kind(kind)] += n
    return {**result, "counts": {kind: counts.get(kind, 0) for kind in VERDICT_KINDS}}
