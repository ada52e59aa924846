"""One training stage as a program of its own, so that `accelerate launch` can run it on several processes.

With `train.processes` above 1, `codelutra run` trains each iteration through `launch_training`, which runs

    accelerate launch --multi_gpu --num_processes N -m codelutra.training.launch \\
        --policy runs/default/iter_1/model --pairs runs/default/iter_2/pairs.jsonl \\
        --out runs/default/iter_2 --config runs/default/config.yaml --seed 2

(the same command trains one iteration by hand: iteration k starts from iteration k-1's `model/`, the base
model for k = 1, with seed = the run's seed + k). This is data parallel: every process holds the whole model
and takes `train.batch_size` pairs a step, so the global batch is batch_size x processes x
gradient_accumulation_steps.

Without GPUs, `--multi_gpu` still starts the processes (with torchrun), and they train together over
gloo; `--cpu` with several processes starts only one, unless given an MPI hostfile.
tests/test_distributed_training.py runs 2 processes on the CPU and checks that they train the adapter that
1 process trains.

Not run by us: GPUs, DeepSpeed, FSDP. With GPUs, `accelerate config` once chooses the setup (accelerate
reads its default config file on every launch). DeepSpeed ZeRO-1/2 keep whole weights on every process,
which the final save needs; FSDP and ZeRO-3 shard them, and training refuses them
(codelutra/training/trainer.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from codelutra.candidates import read_pairs
from codelutra.config import load_config
from codelutra.errors import UserError
from codelutra.layout import IterationFiles
from codelutra.training.trainer import train_policy


def launch_training(
    policy: str,
    pairs_path: Path,
    out_dir: Path,
    config_path: Path,
    *,
    seed: int,
    processes: int,
    reference: str | None = None,
    adapter: tuple[str, str] | None = None,
) -> Path:
    """Train one iteration in `processes` data-parallel processes; return the new policy's directory."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
    command += ["--num_machines", "1", "--main_process_port", "0"]  # port 0: a free one
    command += ["-m", "codelutra.training.launch", "--policy", str(policy), "--pairs", str(pairs_path)]
    command += ["--out", str(out_dir), "--config", str(config_path), "--seed", str(seed)]
    command += ["--reference", str(reference)] if reference else []
    command += ["--adapter", *adapter] if adapter else []
    cores = max(1, (os.cpu_count() or 1) // processes)  # threads per process, unless the user chose
    env = {"OMP_NUM_THREADS": str(cores), **os.environ}
    if subprocess.run(command, env=env).returncode != 0:
        raise UserError(f"training in {processes} processes failed (its output is above); command: {' '.join(command)}")
    return IterationFiles(Path(out_dir)).model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m codelutra.training.launch", description=__doc__.split("\n")[0])
    parser.add_argument("--policy", required=True, help="model folder (or Hub id) to start from; also the reference")
    parser.add_argument("--reference", help="the DPO term's reference instead of --policy (train.reference: base)")
    parser.add_argument("--adapter", nargs=2, metavar=("BASE", "ADAPTER"), help="train this adapter of BASE on (train.lora_adapter: continued)")
    parser.add_argument("--pairs", required=True, help="preference pairs, JSONL (an iteration's pairs.jsonl)")
    parser.add_argument("--out", required=True, help="folder for adapter/ and model/ (an iteration's folder)")
    parser.add_argument("--config", help="run config (YAML); only its train section is used")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. train.batch_size=2")
    parser.add_argument("--seed", type=int, default=0, help="the loop trains iteration k with the run's seed + k")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set).train
    except UserError as e:
        parser.error(str(e))
    adapter = tuple(args.adapter) if args.adapter else None
    train_policy(args.policy, read_pairs(Path(args.pairs)), args.out, cfg, seed=args.seed, reference_path=args.reference, adapter=adapter)


if __name__ == "__main__":
    main()
