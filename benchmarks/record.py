"""What every benchmark result carries, so a number can be traced to where it was measured.

The machine (CPU, cores, memory, GPU), the library versions, the code's commit and the exact
command line go into each result's JSON and markdown; `write_results` writes both.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from codelutra.artifacts import atomic_write_text, write_json

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# Spider's training part, beside the checkout (../shared/data/spider) unless CODELUTRA_SHARED_DATA names its folder.
SPIDER = Path(os.environ.get("CODELUTRA_SHARED_DATA", REPO.parent / "shared" / "data")) / "spider"
SPIDER_PATHS = [f"train_tasks.path={SPIDER}", f"eval_tasks.path={SPIDER}"]  # configs/spider.yaml's paths, made absolute
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


def machine() -> dict:
    import torch  # here, not at the top: benchmark scripts keep their imports light for worker processes

    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),  # OMP_NUM_THREADS where set: two benchmarks may share the cores
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def provenance() -> dict:
    """Machine, versions, commit and command line: the fields every result file starts with."""
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip())
    return {
        "command": shlex.join(sys.orig_argv),  # interpreter and flags included
        "commit": commit + (" (with uncommitted changes)" if dirty else "") if commit else None,
        "machine": machine(),
        "versions": versions(),
    }


def provenance_markdown(info: dict) -> str:
    m = info["machine"]
    gpu = m["gpu"] or "none"
    libs = ", ".join(f"{name} {v}" for name, v in info["versions"].items() if v)
    return (
        f"Command: `{info['command']}`  \n"
        f"Commit: {info['commit'] or 'unknown'}  \n"
        f"Machine: {m['cpu']}, {m['cores']} cores ({m.get('torch_threads', '?')} torch threads), {m['memory_gb']} GiB; GPU: {gpu}; "
        f"Python {m['python']}  \n"
        f"Libraries: {libs}\n"
    )


# What training did to the answers, as the trainer logs it (rewards are beta x the log-prob change against the reference).
TRAINING_KEYS = ("logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected", "rewards/margins", "loss")


def training_ends(train_log: Path) -> dict:
    """Each of TRAINING_KEYS at the first and the last logged step of a `train_log.jsonl` ({} without one)."""
    from codelutra.artifacts import read_jsonl

    log = [row for row in read_jsonl(train_log) if "logps/chosen" in row] if train_log.exists() else []
    return {key: [log[0].get(key, float("nan")), log[-1].get(key, float("nan"))] for key in TRAINING_KEYS} if log else {}


def write_results(results_dir: Path, stem: str, data: dict, markdown: str) -> list[Path]:
    """Write `<stem>.json` and `<stem>.md` into `results_dir`; return their paths."""
    json_path, md_path = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
    write_json(json_path, data)
    atomic_write_text(md_path, markdown)
    return [json_path, md_path]


def add_results_arguments(parser) -> None:
    """--results and --tag, as the scripts that write `<name>[-TAG].{json,md}` take them."""
    parser.add_argument("--results", default=str(RESULTS), help="folder for the result files (default: benchmarks/results/)")
    parser.add_argument("--tag", default="", help="suffix of the result files' names")


def publish(args, name: str, result: dict, markdown: str) -> None:
    """Write `<name>[-TAG].{json,md}` into --results, say where, and print the markdown's table part."""
    from codelutra.console import console

    for path in write_results(Path(args.results), name + (f"-{args.tag}" if args.tag else ""), result, markdown):
        console.print(f"wrote {path}")
    print(markdown.split("\n\n", 2)[2])


class PeakTreeMemory:
    """The largest resident memory of a process and all its descendants, summed, polled in a thread.

    Sandbox workers and launched trainers are children, so a process's own getrusage peak misses them.
    """

    def __init__(self, pid: int | None = None, interval_s: float = 0.05):
        import psutil  # a dependency of accelerate, so present wherever TRL is

        self._root = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.peak_bytes = 0

    def __enter__(self) -> PeakTreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import psutil

        while not self._stop.wait(self._interval_s):
            total = 0
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:  # the root ended
                return
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:  # a process that ended meanwhile
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
