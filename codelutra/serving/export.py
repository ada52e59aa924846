"""`codelutra export`: a refined model as one GGUF file, or as a plain Hugging Face folder with a model card.

The card is made from the run the model came from (`runs/<name>/report.md` and `config.yaml`): what it
was trained on, how, and the held-out accuracy per iteration, so a published model says what it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from codelutra.errors import UserError
from codelutra.layout import RunLayout
from codelutra.models import check_model_dir


def export_model(spec: Path, model_dir: str, format: str, out: Path, *, tensor_type: str = "f16") -> Path:
    """Write the model of `spec` (RUN_DIR/iter_K or a model folder; `model_dir` is its weights) to `out`."""
    model_dir = Path(model_dir)
    check_model_dir(model_dir, spec, "--model")
    if out.exists():
        raise UserError(f"--out {out}: already exists; remove it or choose another path (nothing is overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "gguf":
        from codelutra.serving.gguf_export import write_gguf

        write_gguf(model_dir, out, tensor_type)
    else:
        _write_hf_folder(spec, model_dir, out)
    return out


def _write_hf_folder(spec: Path, model_dir: Path, out: Path) -> None:
    """The model's files plus README.md, built in a temporary sibling folder and renamed into place."""
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        for item in model_dir.iterdir():
            if item.is_file() and item.name != "README.md":
                shutil.copy2(item, building / item.name)
        (building / "README.md").write_text(model_card(spec, model_dir), encoding="utf-8")
        os.chmod(building, 0o755)  # mkdtemp makes it private; it is a model to share
        os.replace(building, out)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _iteration_of(spec: Path) -> Path:
    return spec.parent if spec.name == "model" else spec


def run_of(spec: Path) -> RunLayout | None:
    """The run of RUN_DIR/iter_K (or of its model folder); None for a model not from a run."""
    found = RunLayout.of_iteration(_iteration_of(spec))
    return found[0] if found and found[0].config.is_file() else None


def model_card(spec: Path, model_dir: Path) -> str:
    """A Hugging Face model card: front matter, then the run's data, recipe and accuracy table."""
    from codelutra.config import dump_config, load_config

    run = run_of(spec)
    if run is None:
        return _front_matter(None) + f"# {model_dir.name}\n\nExported by codelutra from `{model_dir}` (not from a codelutra run).\n"
    cfg = load_config(run.config)
    report = run.report
    train = cfg.train
    lines = [
        f"# codelutra run `{cfg.name}`, {_iteration_of(spec).name}",
        "",
        (
            f"Refined from `{cfg.model.name}` with codelutra: candidates sampled from the model, judged by execution "
            "in a sandbox, correct paired with incorrect, trained with DPO plus an SFT term "
            "([CodeLutra](https://arxiv.org/abs/2411.05199))."
        ),
        "",
        "## Data",
        "",
        f"- training problems: `{cfg.train_tasks.path}` (limit {cfg.train_tasks.limit}, {cfg.sampling.n} sample(s) per problem)",
        f"- held-out problems: `{cfg.eval_tasks.path}` (limit {cfg.eval_tasks.limit})",
        "",
        "## Recipe",
        "",
        (
            f"- loss: {train.loss} (beta {train.beta}, SFT weight {train.sft_weight}, anchor {train.anchor}, "
            f"rejected window {train.rejected_window}), "
            f"learning rate {train.learning_rate}, {train.epochs} epoch(s) per iteration"
        ),
        f"- LoRA: {train.lora} (r {train.lora_r}, alpha {train.lora_alpha}), merged into the weights",
        f"- iterations: at most {cfg.max_iterations}",
        "",
        "The whole configuration, as the run used it:",
        "",
        "```yaml",
        dump_config(cfg).rstrip(),
        "```",
        "",
        "## Run report",
        "",
        _demoted(report.read_text(encoding="utf-8")) if report.is_file() else "(the run wrote no report.md)",
    ]
    return _front_matter(cfg.model.name) + "\n".join(lines) + "\n"


def _front_matter(base_model: str | None) -> str:
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation", "tags": ["codelutra", "text-to-sql"]}
    if base_model and "/" in base_model and not base_model.startswith(("/", ".", "~", "embedded:")):
        meta["base_model"] = base_model  # a Hub id
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n"


def _demoted(markdown: str) -> str:
    """The report's headings one level down, under the card's own; its plot is not copied, so its image link goes."""
    lines = []
    for line in markdown.splitlines():
        if line.startswith("![") and line.endswith(")"):
            continue
        lines.append("#" + line if line.startswith("#") else line)
    return "\n".join(lines)
