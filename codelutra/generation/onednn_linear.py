"""Linear layers run by oneDNN on weights reordered once into its layout, for the forward-only passes on a CPU.

A sampling stage runs the same weights thousands of times, a decode step over a few dozen rows each
time. On this project's CPU the plain `torch.nn.functional.linear` (MKL) runs those shapes well below
the fp32 matmul's GFLOP/s. oneDNN's linear on a weight reordered once into its blocked layout (what
torch's own compiler does for CPU inference) runs the same products faster: `benchmarks/decode_step.py`
times a decode step's linear layers both ways, and `benchmarks/speed.py`'s shared-sampling rows show
what it gives a whole sampling call. The results are the same float32 products summed in another
order: within float32 rounding of the plain layer's.

Only forward-only code uses it, for as long as the weights stay as they are: a sampling backend for its
lifetime, the reference pass before training. Both ops are torch internals (named here once, pinned by
tests/test_onednn_linear.py); where they are missing, or on other devices, layers stay as they are.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch

# (weight (out, in)) -> the same weight in oneDNN's layout; None in a torch built without oneDNN
REORDER_WEIGHT = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
# (input, reordered weight, bias, "none", [], "") -> input @ weight.T + bias
ONEDNN_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def onednn_ready(module: torch.nn.Module) -> bool:
    """A plain `nn.Linear` (not a subclass with its own forward, such as a quantised layer) whose float32
    weight is whole on the CPU (not a DeepSpeed ZeRO-3 shard), where torch has oneDNN."""
    if type(module) is not torch.nn.Linear or REORDER_WEIGHT is None or ONEDNN_LINEAR is None:
        return False
    weight = module.weight
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and tuple(weight.shape) == (module.out_features, module.in_features)
        and torch.backends.mkldnn.is_available()
    )


@contextmanager
def onednn_linear_layers(model: torch.nn.Module):
    """Run the model's oneDNN-ready linear layers on reordered copies of their weights; yields how many run so.

    The copies are taken on entry, so nothing may change the weights inside (no training step); on exit the
    layers are as they were. The copies cost the layers' weights' memory once more while they live.
    """
    layers = [module for module in model.modules() if onednn_ready(module)]
    for layer in layers:
        layer.forward = partial(_onednn_forward, layer, REORDER_WEIGHT(layer.weight.detach()))
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer.forward  # the class's forward again


def _onednn_forward(layer: torch.nn.Linear, reordered: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled():  # the reordered copy is no parameter: a gradient would silently miss the weight
        raise RuntimeError("oneDNN linear layers are for forward-only passes (torch.no_grad or inference_mode)")
    if torch.is_autocast_enabled(input.device.type) or input.dtype != torch.float32:  # the layer's own mixed precision
        return torch.nn.functional.linear(input, layer.weight, layer.bias)
    return ONEDNN_LINEAR(input, reordered, layer.bias, "none", [], "")
