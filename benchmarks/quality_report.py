"""How benchmarks/quality.py shows its results: the terminal table, the markdown page and the accuracy plot.

Everything here reads the results dict that quality.py writes as JSON, so a page can be redrawn from the JSON alone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from statistics import fmean

from record import provenance_markdown
from rich.table import Table


def _rows(result: dict):
    """(arm, iteration, mean, min, max, per-seed accuracies, train pass@1, pass@n, pairs, gold-chosen, wall s)."""
    base = result["base"]
    acc = base["heldout_pass@1_greedy"]
    yield ("base model", 0, acc, acc, acc, [acc], None, None, None, None, base["eval_seconds"])
    for arm, history in result["arms"].items():
        for r in history:
            yield (
                arm, r["iteration"], r["mean"], r["min"], r["max"], r["accuracies"], fmean(r["train_pass@1"]),
                fmean(r["train_pass@n"]), fmean(r["pairs"]), fmean(r["pairs_gold_chosen"]), fmean(r["wall_seconds"]),
            )  # fmt: skip


def _cells(row) -> list[str]:
    arm, k, mean, low, high, accuracies, pass1, passn, pairs, gold, wall = row
    return [
        arm, str(k), f"{mean:.1%}", f"{low:.1%} - {high:.1%}", ", ".join(f"{a:.1%}" for a in accuracies),
        _optional(pass1, ".1%"), _optional(passn, ".1%"), _optional(pairs, ".0f"), _optional(gold, ".0f"), f"{wall:.0f}",
    ]  # fmt: skip


def _optional(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


HEADERS = ("arm", "iter", "mean", "min - max", "per seed", "train pass@1", "train pass@n", "pairs", "gold chosen", "wall s")


def summary_table(result: dict) -> Table:
    s = result["settings"]
    table = Table(
        title=f"Quality: {result['tasks']} ({result['size']}), held-out execution accuracy "
        f"({s['eval_problems']} problems, seeds {', '.join(map(str, s['seeds']))})",
        caption="train pass@1 / pass@n: the policy that sampled the iteration's training problems, n samples each",
    )
    for name in HEADERS:
        table.add_column(name, justify="left" if name in ("arm", "per seed") else "right")
    for row in _rows(result):
        table.add_row(*_cells(row))
    return table


def markdown(result: dict, png: str) -> str:
    s = result["settings"]
    lines = [
        f"# Quality benchmark: {result['tasks']} ({result['size']})",
        "",
        provenance_markdown(result),
        (
            f"Seeds: {', '.join(map(str, s['seeds']))}. Per iteration: {s['train_problems_per_iteration']} training problems "
            f"(drawn from a pool of {s['train_pool']}), {s['samples_per_problem']} samples each, "
            f"{s['train_steps_per_iteration']} training steps; {s['iterations']} iterations; held-out problems: "
            f"{s['eval_problems']} (greedy decoding, execution accuracy), the same for every arm and seed."
        ),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in _rows(result):
        lines.append("| " + " | ".join(_cells(row)) + " |")
    lines += [
        "",
        (
            "Mean and min - max over the seeds; pairs, gold chosen (pairs whose correct side is the gold code, not the "
            "model's own answer) and wall s are means over the seeds. Train pass@1 / pass@n: how often the policy that "
            "sampled the iteration's training problems was right by itself (unbiased estimator over its samples). "
            "Wall s: sampling, verifying, pairing, training and evaluating that iteration (summed over resumptions); "
            "iteration 1 of the sft and dpo arms reuses the codelutra arm's samples, so it has no sampling time."
        ),
        "",
        *paired_markdown(result),
        f"![accuracy per iteration]({png})",
        "",
        f"Configuration of the codelutra arm, seed {s['seeds'][0]} (the others differ only in `train.loss`, `seed` and `name`):",
        "",
        "```yaml",
        s["config"].rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def paired_markdown(result: dict) -> list[str]:
    """The paired differences (the comparison that decides) and, per iteration, the pairs' rejected kinds and the DPO term."""
    lines = []
    for name, rows in result.get("paired", {}).items():
        lines += [
            f"Paired, {name.replace('_minus_', ' - ')} (per held-out problem and seed; 95% bootstrap interval, "
            "problems resampled within seeds; an interval holding 0 is a tie):",
            "",
            "| iteration | mean | 95% interval | verdicts paired |",
            "|---:|---:|---|---:|",
        ]
        lines += [f"| {r['iteration']} | {r['mean']:+.1%} | [{r['ci95'][0]:+.1%}, {r['ci95'][1]:+.1%}] | {r['n']} |" for r in rows]
        lines.append("")
    lines += [
        "| arm | iter | rejected kinds (seed mean) | chosen logp first -> last | rejected logp first -> last |",
        "|---|---:|---|---|---|",
    ]
    for arm, history in result["arms"].items():
        for r in history:
            kinds = Counter()
            for mix in r["rejected_kinds"]:
                kinds.update(mix)
            term = r["dpo_term"][0] or {}
            logps = [" -> ".join(f"{v:.2f}" for v in term.get(key, [])) for key in ("logps/chosen", "logps/rejected")]
            mix = ", ".join(f"{kind} {count / len(r['rejected_kinds']):.0f}" for kind, count in kinds.most_common())
            lines.append(f"| {arm} | {r['iteration']} | {mix} | {logps[0]} | {logps[1]} |")
    return [*lines, ""]


def plot_curves(result: dict, path: Path) -> None:
    """Each arm's mean held-out accuracy per iteration, the band between the seeds' lowest and highest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    base = 100 * result["base"]["heldout_pass@1_greedy"]
    for arm, history in result["arms"].items():
        steps = [0] + [r["iteration"] for r in history]
        line = ax.plot(steps, [base] + [100 * r["mean"] for r in history], marker="o", label=arm)[0]
        low, high = (
            [base] + [100 * r["min"] for r in history],
            [base] + [100 * r["max"] for r in history],
        )
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
    s = result["settings"]
    ax.set_xlabel("iteration (0 = base model)")
    ax.set_ylabel(f"held-out execution accuracy (%), {s['eval_problems']} problems")
    seeds = f"mean of {len(s['seeds'])} seeds, band: min - max" if len(s["seeds"]) > 1 else f"seed {s['seeds'][0]}"
    ax.set_title(f"{' vs '.join(result['arms'])}: {result['tasks']}" + f" ({result['size']})" + f"\n{seeds}")
    ax.set_xticks(range(s["iterations"] + 1))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
