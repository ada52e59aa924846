"""Held-out evaluation: greedy decoding, execution accuracy and the breakdown by verdict kind."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from codelutra.artifacts import read_json, write_json
from codelutra.config import EvalConfig, GenerationConfig, PromptConfig, VerifyConfig
from codelutra.errors import UserError
from codelutra.execution.engines import engine_of, local_file
from codelutra.generation.types import SamplingParams
from codelutra.layout import EvalFiles
from codelutra.loop.stages import (
    first_answer_scores,
    generate_completions,
    judge_completions,
)
from codelutra.loop.vote import evaluate_voted, require_votable
from codelutra.tasks import Skipped, Task
from codelutra.tasks.kinds import TaskSet
from codelutra.tasks.sources import print_skipped, write_skipped


def evaluate_model(
    model_path: str,
    tasks: TaskSet,
    out_dir: Path,
    *,
    prompt: PromptConfig,
    eval_cfg: EvalConfig,
    verify: VerifyConfig,
    label: str,
    generation: GenerationConfig = GenerationConfig(),
    model_name: str | None = None,
    skipped: list[Skipped] = (),
) -> dict:
    """Evaluate `model_path` on `tasks`; write `out_dir/eval.json` (accuracy, n, counts) and its samples.

    With `eval_cfg.vote`, eval.json also holds `voted` (`codelutra.loop.vote.evaluate_voted`).

    `generation` says where the completions come from; for the openai backend `model_path` is the
    endpoint's model name. A folder is reused (its results, or its samples so far) only for the same
    model, tasks and settings; otherwise this raises `UserError` before anything is written.
    `model_name` is the model as `eval_inputs.json` records it (default: `model_path`): a run names
    its base model as configured and its iterations' models relative to the run folder, so that the
    folder still resumes after it is moved to another disk or machine. `skipped`, the problems left out
    of `tasks` (`codelutra eval`), are listed in the folder and summarized once it is claimed.
    """
    files = EvalFiles(Path(out_dir))
    require_votable(tasks, eval_cfg.vote)  # before the folder is claimed: a refused command writes nothing
    max_new_tokens = tasks.kind.max_new_tokens(eval_cfg.max_new_tokens)
    settings = (prompt, eval_cfg, max_new_tokens, verify, generation)
    _claim_eval_dir(files, _inputs(model_name or model_path, tasks, *settings), _inputs_v1(model_path, tasks, *settings))
    if skipped:
        write_skipped(files.skipped, skipped)
        print_skipped(label, len(tasks), skipped, files.skipped)
    if files.result.exists():
        return read_json(files.result)
    start = time.monotonic()
    sampled = generate_completions(
        model_path,
        tasks,
        files.samples,
        prompt=prompt,
        params=SamplingParams(max_new_tokens=max_new_tokens, batch_size=eval_cfg.batch_size),
        description=f"{label}: generating (greedy)",
        generation=generation,
    )
    judged = judge_completions(tasks, sampled, files.verdicts, verify=verify, description=f"{label}: verifying")
    result = {
        "model": model_path,
        **first_answer_scores(judged),
        "seconds": round(time.monotonic() - start, 1),
        "match": verify.match,  # the scoring rule (SQL tasks; see execution/sql_match.py)
        "variants": verify.variants,  # perturbed database copies a SQL answer also had to match on
    }
    if eval_cfg.vote:  # `accuracy` stays the greedy one; the voted answers are reported beside it
        settings = dict(prompt=prompt, eval_cfg=eval_cfg, verify=verify, label=label, generation=generation)
        result["voted"] = evaluate_voted(model_path, tasks, files, **settings)
    write_json(files.result, result)
    return result


INPUTS_VERSION = 2  # eval_inputs.json without "version" (1) held the model and the databases as absolute paths


def _inputs(model, tasks, prompt, eval_cfg, max_new_tokens, verify, generation) -> dict:
    """What the results of an evaluation depend on; parallelism (workers, batch sizes, concurrency) is left out.

    Nothing in it depends on where the folder or the data lie: a database counts by its file's name
    (or its server address), so a run moved to another machine, its databases elsewhere, still resumes.
    """
    return {"version": INPUTS_VERSION, **_inputs_v1(model, tasks, prompt, eval_cfg, max_new_tokens, verify, generation, _database)}


def _inputs_v1(model, tasks, prompt, eval_cfg, max_new_tokens, verify, generation, database=lambda t: t.db_path) -> dict:
    """The inputs as version 1 recorded them (each database by its absolute path); `database` names a task's database.

    A preamble (HumanEval's prompt) changes what is judged; tasks without one hash as they did before it existed.
    """
    problems = json.dumps(
        [(t.id, t.question, t.gold, database(t), t.tests, t.code_context) + ((t.preamble,) if t.preamble else ()) for t in tasks]
    )
    return {
        "model": model,
        "tasks": {"n": len(tasks), "sha256": hashlib.sha256(problems.encode()).hexdigest()},
        "settings": {
            "prompt": prompt.model_dump(mode="json"),
            # eval.base says whether a run evaluates its base model at all, nothing about how an evaluation runs
            "eval": {**eval_cfg.model_dump(mode="json", exclude={"batch_size", "base"}), "max_new_tokens": max_new_tokens},
            "verify": verify.model_dump(mode="json", exclude={"workers"}),
            # constrain only where on, so that folders written before it existed still match an unconstrained evaluation
            "generation": generation.model_dump(
                mode="json", include={"backend", "base_url"} | ({"constrain"} if generation.constrain != "none" else set())
            ),
        },
    }


def _database(task: Task) -> str:
    """A task's database as the inputs name it: a file by its name, a server by its address ('' for Python tasks)."""
    if not task.db_path or engine_of(task.db_path) == "postgres":
        return task.db_path
    return Path(local_file(task.db_path)).name


def _claim_eval_dir(files: EvalFiles, inputs: dict, inputs_v1: dict) -> None:
    """Record what the folder evaluates; refuse a folder that holds an evaluation of something else.

    A folder recorded by version 1 is compared with `inputs_v1`, then recorded anew as movable; a
    folder from before `eval_inputs.json` existed is checked by what its eval.json says (model, n).
    """
    path = files.inputs
    held = read_json(path) if path.exists() else None
    if held is not None:
        differs = _differences(held, inputs if "version" in held else inputs_v1)
    elif files.result.exists():
        old = read_json(files.result)
        held_then = {"model": old.get("model"), "n": old.get("n")}
        differs = _differences(held_then, {"model": inputs_v1["model"], "n": inputs["tasks"]["n"]})
    else:
        differs = []
    if differs:
        raise UserError(
            f"{files.dir}: holds an evaluation with a different {', '.join(differs)}; "
            "choose another output folder (--output) or delete this one to start fresh"
        )
    if held != inputs:
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

