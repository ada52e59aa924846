"""`codelutra run` on the embedded default model (SmolLM2-135M-Instruct), end to end, with a small budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_codelutra_run_on_the_embedded_default(tmp_path):
    result = subprocess.run(
        [
            sys.executable, "-m", "codelutra.cli", "run",
            "--output", str(tmp_path),
            "--set", "train_tasks.limit=8",
            "--set", "eval_tasks.limit=8",
            "--set", "sampling.n=2",
            "--set", "sampling.max_new_tokens=40",
            "--set", "eval.max_new_tokens=40",
            "--set", "train.epochs=1",
            "--set", "max_iterations=1",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "default"
    for k in (0, 1):
        evaluation = json.loads((run_dir / f"iter_{k}" / "eval.json").read_text())
        assert evaluation["n"] == 8 and sum(evaluation["counts"].values()) == 8
    samples = [json.loads(line) for line in (run_dir / "iter_1" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and all(c.startswith("```sql\n") for s in samples for c in s["completions"])
    assert (run_dir / "iter_1" / "pairs.jsonl").read_text().strip()
    assert (run_dir / "iter_1" / "model" / "model.safetensors").exists()
    assert "iteration 1" in result.stdout and "base model" in result.stdout  # the accuracy table
    assert (run_dir / "report.md").exists() and (run_dir / "accuracy.png").exists()
