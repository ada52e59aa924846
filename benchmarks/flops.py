"""FLOP rates: how far a stage is from what this machine's matrix multiply achieves (the FLOP floor)."""

from __future__ import annotations

import time


def parameters_of(model) -> int:
    return sum(p.numel() for p in model.parameters())


def matmul_stage(n: int = 1024, repeats: int = 8) -> float:
    """GFLOP/s of a plain float32 matmul on this machine: the floor a FLOP-bound stage is measured against."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_gflops(parameters: int, tokens: int, seconds: float) -> float:
    """Achieved GFLOP/s of forward passes alone (sampling): 2 x parameters x tokens computed."""
    return 2 * parameters * tokens / seconds / 1e9


def training_gflops(out: dict, seconds: float) -> float:
    """Achieved GFLOP/s: 6 x parameters x tokens for the training passes (forward and backward), plus 2 x for
    each extra forward-only pass (TRL's per-step reference); the one-off reference pass is not counted."""
    flops = (6 + 2 * (out["forward_passes_per_step"] - 1)) * out["parameters"] * out["tokens"]
    return flops / seconds / 1e9
