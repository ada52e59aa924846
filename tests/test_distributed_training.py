"""Several processes: `accelerate launch` with 2 CPU processes (gloo) trains the adapter that 1 process trains.

Both see the same global batch of 4 pairs a step (1 x 4 and 2 x 2), from the same seed. The results are
equal in exact arithmetic here: the DPO term is a mean over pairs, DDP averages the processes' gradients,
and every chosen answer has the same number of tokens, so the SFT term's per-process token mean averages
to the pooled one. Float sums in another order make them differ in the last bits, which the Adam steps
carry on; the tolerance allows that and is checked, in the same test, to be far below what a process
training on its own half of the data (no gradient averaging, or both processes given the same half) moves.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from codelutra.artifacts import write_jsonl
from codelutra.candidates import pair_of_row
from codelutra.config import TrainConfig
from codelutra.training.launch import launch_training
from codelutra.training.trainer import train_policy

REPO = Path(__file__).resolve().parents[1]
STEPS, SEED = 3, 5
TOLERANCE = 1e-4  # largest absolute difference of any adapter weight; updates are ~lr = 5e-2 a step


def _pairs() -> list[dict]:
    """Four pairs whose chosen (and rejected) answers differ in one digit only: the same token counts."""
    return [
        {
            "prompt": [{"role": "user", "content": f"t(a, b)\nQuestion: how many rows have a > {i}?"}],
            "chosen": f"```sql\nSELECT count(*) FROM t WHERE a > {i}\n```",
            "rejected": f"SELECT * FROM t{i}",
        }
        for i in range(4)
    ]


def _config(batch_size: int) -> TrainConfig:
    return TrainConfig(lora_r=4, learning_rate=5e-2, max_steps=STEPS, batch_size=batch_size, checkpoint_steps=1000)


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "adapter" / "adapter_model.safetensors")


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch build has no torch.distributed with the gloo backend, which 2 CPU processes need",
)
def test_two_processes_train_the_adapter_one_process_trains(tiny_model_dir, tmp_path, monkeypatch):
    pairs_file = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_file, _pairs())
    one = train_policy(tiny_model_dir, [pair_of_row(r) for r in _pairs()], tmp_path / "one", _config(batch_size=4), seed=SEED).parent

    two, config = tmp_path / "two", tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"train": _config(batch_size=2).model_dump(exclude_defaults=True)}))
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    launch_training(tiny_model_dir, pairs_file, two, config, seed=SEED, processes=2)  # what the Refiner runs

    assert (two / "model" / "config.json").exists() and not (two / "checkpoints").exists()
    diff = _max_diff(_adapter(one), _adapter(two))
    assert diff < TOLERANCE, f"2 processes trained another adapter than 1 process: max |difference| {diff:.1e}"

    # What a process that trains on its half alone would save: far outside the tolerance.
    half = train_policy(tiny_model_dir, [pair_of_row(r) for r in _pairs()[:2]], tmp_path / "half", _config(batch_size=2), seed=SEED).parent
    wrong = _max_diff(_adapter(one), _adapter(half))
    assert wrong > 100 * TOLERANCE, f"training on half the pairs moved the adapter by only {wrong:.1e}"
