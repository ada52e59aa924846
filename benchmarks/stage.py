"""Running a benchmark stage in a child process of its own: its value, wall seconds and peak memory.

A fresh interpreter per stage (spawn), so nothing is inherited and the memory it reports is its own.
"""

from __future__ import annotations

import importlib
import multiprocessing
import resource
import sys
import time
import traceback

from record import PeakTreeMemory

LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets")  # imported before a stage's clock starts
_SPAWN = multiprocessing.get_context("spawn")


def measure(fn, *args, preload: tuple[str, ...] = ()) -> dict:
    """Run `fn(*args)` in a fresh process; return its value, wall seconds and peak memory.

    The `preload` modules are imported first, outside the time (on a small CPU, importing torch,
    transformers and TRL takes seconds). This process must stay small, without torch: on Linux a
    child's peak resident memory (getrusage) starts from its parent's peak at the moment it starts.
    """
    receiver, sender = _SPAWN.Pipe(duplex=False)
    process = _SPAWN.Process(target=_measured_call, args=(sender, fn, args, preload))
    process.start()
    sender.close()  # so that our end reads EOF if the child dies
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = "error", "the stage's process died"
    process.join()
    if status == "error":
        raise RuntimeError(f"{fn.__name__} failed (exit code {process.exitcode}):\n{payload}")
    return payload


def _measured_call(sender, fn, args, preload) -> None:
    for module in preload:
        importlib.import_module(module)
    with PeakTreeMemory() as memory:
        start = time.perf_counter()
        try:
            value = fn(*args)
        except BaseException:
            sender.send(("error", traceback.format_exc()))
            return
        seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # MB
    torch = sys.modules.get("torch")
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch is not None and torch.cuda.is_available() else None
    peak_tree = max(own, memory.peak_bytes / 2**20)
    sender.send(("ok", {"value": value, "seconds": seconds, "peak_rss_mb": own, "peak_rss_with_workers_mb": peak_tree, "peak_gpu_mb": gpu}))


def result_row(variant: str, work: float, unit: str, measured: dict, note: str = "") -> dict:
    return {
        "variant": variant,
        "work": work,
        "unit": unit,
        "seconds": significant(measured["seconds"]),
        "rate": significant(work / measured["seconds"]),
        "peak_rss_mb": round(measured["peak_rss_mb"]),
        "peak_rss_with_workers_mb": round(measured["peak_rss_with_workers_mb"]),
        "peak_gpu_mb": measured["peak_gpu_mb"] and round(measured["peak_gpu_mb"]),
        "note": note,
    }


def with_ratios(rows: list[dict], baseline: dict, key: str = "rate") -> list[dict]:
    return [{**row, "ratio": significant(row[key] / baseline[key])} for row in rows]


def significant(x: float) -> float:
    return float(f"{x:.4g}")
