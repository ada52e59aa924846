"""The paired comparison of two arms: per held-out problem and seed, one arm's verdict against the other's.

Two arms evaluated on the same problems with the same seeds differ, problem by problem, by -1, 0 or +1;
the mean of those differences is the accuracy gap, and resampling problems (within each seed, so every
seed keeps its weight) gives its 95% interval. An interval that holds 0 is a tie.

Usage: python benchmarks/paired.py EVAL_DIR_A EVAL_DIR_B   (two `codelutra eval` folders on the same problems:
       prints each one's accuracy and A - B with its interval; a verdicts file instead of a folder, e.g.
       EVAL_DIR/vote_verdicts.jsonl, compares the voted answers)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from codelutra.artifacts import read_jsonl
from codelutra.layout import EvalFiles


def paired_difference(a: dict, b: dict, *, resamples: int = 4000, seed: int = 0) -> dict:
    """Mean of a - b over the (seed, problem) keys both hold, with a 95% percentile bootstrap interval.

    `a` and `b` map (seed, problem id) to True where the answer was correct. Returns the mean, the interval,
    the number of paired verdicts and how many problems only `a` or only `b` got right.
    """
    keys = sorted(a.keys() & b.keys(), key=str)
    if not keys:
        raise ValueError("the two arms share no (seed, problem) verdicts")
    by_seed: dict = {}
    for key in keys:
        by_seed.setdefault(key[0], []).append(int(a[key]) - int(b[key]))
    n = len(keys)
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        total = 0
        for diffs in by_seed.values():
            total += sum(rng.choices(diffs, k=len(diffs)))
        means.append(total / n)
    means.sort()
    return {
        "mean": sum(int(a[k]) - int(b[k]) for k in keys) / n,
        "ci95": [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]],
        "n": n,
        "only_a": sum(a[k] and not b[k] for k in keys),
        "only_b": sum(b[k] and not a[k] for k in keys),
    }


def eval_verdicts(folder: str | Path) -> dict:
    """A `codelutra eval` folder's greedy verdicts (or a verdicts file's) as paired_difference takes them:
    (0, problem id) -> correct."""
    path = Path(folder)
    return {(0, row["id"]): row["verdicts"][0] == "correct" for row in read_jsonl(path if path.is_file() else EvalFiles(path).verdicts)}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python benchmarks/paired.py EVAL_DIR_A EVAL_DIR_B", file=sys.stderr)
        return 2
    a, b = (eval_verdicts(folder) for folder in argv)
    diff = paired_difference(a, b)
    for name, verdicts in zip("AB", (a, b)):
        print(f"{name}: {sum(verdicts.values()) / len(verdicts):.1%} of {len(verdicts)}")
    low, high = diff["ci95"]
    print(f"A - B: {diff['mean']:+.1%} [{low:+.1%}, {high:+.1%}] over {diff['n']} problems; "
          f"only A right {diff['only_a']}, only B right {diff['only_b']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

