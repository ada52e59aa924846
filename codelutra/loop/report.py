"""What a run shows a person: the accuracy table (terminal and report.md) and a plot per run."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from codelutra.artifacts import atomic_write_text, read_json
from codelutra.execution.verdict import VERDICT_KINDS
from codelutra.layout import RunLayout


def accuracy_table(history: list[dict], title: str = "Held-out execution accuracy") -> Table:
    table = Table(title=title)
    for header in _headers(history):
        table.add_column(header, justify="left" if header == "model" else "right", no_wrap=header == "model")
    for row in history:
        table.add_row(*_cells(row, history))
    return table


def markdown_table(history: list[dict]) -> str:
    headers = _headers(history)
    head = "| " + " | ".join(headers) + " |"
    rule = "|---|" + "---:|" * (len(headers) - 1)
    rows = ["| " + " | ".join(_cells(r, history)) + " |" for r in history]
    return "\n".join([head, rule, *rows]) + "\n"


def _headers(history: list[dict]) -> list[str]:
    """The columns; with voted results, greedy and voted accuracy side by side (the verdict counts are greedy's)."""
    sizes = _vote_sizes(history)
    if not sizes:
        return ["model", "accuracy", "n", *VERDICT_KINDS]
    voted = f"voted accuracy ({sizes.pop()} samples)" if len(sizes) == 1 else "voted accuracy (samples)"
    return ["model", "greedy accuracy", voted, "n", *VERDICT_KINDS]


def _cells(row: dict, history: list[dict]) -> list[str]:
    counts = [str(row["counts"].get(k, 0)) for k in VERDICT_KINDS]
    sizes = _vote_sizes(history)
    if not sizes:
        return [_label(row), f"{row['accuracy']:.1%}", str(row["n"]), *counts]
    voted = row.get("voted")
    voted_cell = "" if voted is None else f"{voted['accuracy']:.1%}" + ("" if len(sizes) == 1 else f" ({voted['candidates']})")
    return [_label(row), f"{row['accuracy']:.1%}", voted_cell, str(row["n"]), *counts]


def _vote_sizes(history: list[dict]) -> set[int]:
    """How many candidates each voted row voted over."""
    return {r["voted"]["candidates"] for r in history if "voted" in r}


def write_report(run: RunLayout, history: list[dict], cfg) -> None:
    """Write `report.md` and `accuracy.png` for a run."""
    plot_history(history, run.plot, title=f"codelutra run '{cfg.name}'")
    t = cfg.train
    settings = "" if t.loss == "sft" else f" (beta={t.beta}, lambda={t.sft_weight}, anchor={t.anchor}, rejected_window={t.rejected_window})"
    text = (
        f"# codelutra run `{cfg.name}`\n\n"
        f"Model: `{cfg.model.name}`; training tasks: `{cfg.train_tasks.path}`; "
        f"held-out tasks: `{cfg.eval_tasks.path}`; loss: {t.loss}{settings}.\n\n"
        + markdown_table(history)
        + f"\n![accuracy per iteration]({run.plot.name})\n"
        + ("" if history and history[0]["iteration"] == 0 else "\nThe base model was not evaluated (`eval.base: false`).\n")
        + timings_table(run, [r["iteration"] for r in history])
    )
    atomic_write_text(run.report, text)


STAGES = ("sample", "verify", "pair", "train", "eval")


def timings_table(run: RunLayout, iterations: list[int]) -> str:
    """Seconds per stage of each of `iterations`, from its timings.json (where the Refiner wrote one)."""
    rows = []
    for k in iterations:
        path = run.iteration(k).timings
        if path.exists():
            times = read_json(path)
            cells = [f"{times[stage]:.0f}" if stage in times else "" for stage in STAGES]
            rows.append(f"| {k} | " + " | ".join(cells) + f" | {sum(times.values()):.0f} |")
    if not rows:
        return ""
    head = "| iteration | " + " | ".join(STAGES) + " | total |\n|---:|" + "---:|" * (len(STAGES) + 1)
    return "\nSeconds per stage (summed over resumptions):\n\n" + head + "\n" + "\n".join(rows) + "\n"


def plot_history(history: list[dict], path: Path, title: str) -> None:
    """Accuracy per iteration (line) above the verdict kinds per iteration (stacked bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = [r["iteration"] for r in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [1, 1]})
    top.plot(iterations, [100 * r["accuracy"] for r in history], marker="o", label="greedy")
    voted = [(r["iteration"], 100 * r["voted"]["accuracy"]) for r in history if "voted" in r]
    if voted:
        top.plot(*zip(*voted), marker="s", label=f"voted ({', '.join(map(str, sorted(_vote_sizes(history))))} samples)")
        top.legend(fontsize=8)
    top.set_ylabel("execution accuracy (%)")
    top.set_title(title)
    top.grid(alpha=0.3)
    base = [0] * len(history)
    for kind in VERDICT_KINDS:
        values = [r["counts"].get(kind, 0) for r in history]
        bottom.bar(iterations, values, bottom=base, label=kind)
        base = [b + v for b, v in zip(base, values)]
    bottom.set_xlabel("iteration (0 = base model)")
    bottom.set_ylabel("held-out problems")
    bottom.set_xticks(iterations)
    bottom.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _label(row: dict) -> str:
    return "base model" if row.get("iteration") == 0 else f"iteration {row['iteration']}" if "iteration" in row else row.get("model", "")
