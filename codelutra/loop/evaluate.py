"""Held-out evaluation: greedy decoding, execution accuracy and the breakdown by verdict kind."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from codelutra.artifacts import read_json, write_json
from codelutra.config import EvalConfig, GenerationConfig, PromptConfig, VerifyConfig
from codelutra.execution.verdict import VERDICT_KINDS, verdict_kind
from codelutra.generation.types import SamplingParams
from codelutra.loop.stages import generate_completions, judge_completions
from codelutra.loop.vote import evaluate_voted, require_votable
from codelutra.tasks import Task


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
    endpoint's model name.
    """
    out_dir = Path(out_dir)
    if (out_dir / "eval.json").exists():
        return _with_current_kinds(read_json(out_dir / "eval.json"))
    require_votable(tasks, eval_cfg.vote)
    start = time.monotonic()
    samples = generate_completions(
        model_path,
        tasks,
        out_dir / "eval_samples.jsonl",
        prompt=prompt,
        params=SamplingParams(max_new_tokens=eval_cfg.max_new_tokens, batch_size=eval_cfg.batch_size),
        description=f"{label}: generating (greedy)",
        generation=generation,
    )
    verdicts = judge_completions(
        tasks, samples, out_dir / "eval_verdicts.jsonl", verify=verify, description=f"{label}: verifying"
    )
    counts = Counter(verdict_kind(row["verdicts"][0]) for row in verdicts)
    result = {
        "model": model_path,
        "n": len(verdicts),
        "accuracy": counts["correct"] / len(verdicts) if verdicts else 0.0,
        "counts": {kind: counts.get(kind, 0) for kind in VERDICT_KINDS},
        "seconds": round(time.monotonic() - start, 1),
        "match": verify.match,  # the scoring rule (SQL tasks; see execution/sql_match.py)
        "variants": verify.variants,  # perturbed database copies a SQL answer also had to match on
    }
    if eval_cfg.vote:  # `accuracy` stays the greedy one; the voted answers are reported beside it
        settings = dict(prompt=prompt, eval_cfg=eval_cfg, verify=verify, label=label, generation=generation)
        result["voted"] = evaluate_voted(model_path, tasks, out_dir, **settings)
    write_json(out_dir / "eval.json", result)
    return result


def _with_current_kinds(result: dict) -> dict:
    """An eval.json written by an older version, its verdict counts under today's kind names."""
    counts: Counter = Counter()
    for kind, n in result.get("counts", {}).items():
        counts[verdict_kind(kind)] += n
    return {**result, "counts": {kind: counts.get(kind, 0) for kind in VERDICT_KINDS}}
