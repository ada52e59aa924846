"""Where each artifact of a run lives: one object that every writer and reader of a run folder uses.

    runs/<name>/config.yaml, report.md, accuracy.png, skipped_train_tasks.jsonl, skipped_eval_tasks.jsonl
    runs/<name>/iter_0/eval.json, eval_samples.jsonl, eval_verdicts.jsonl        the base model
    runs/<name>/iter_<k>/samples.jsonl, verdicts.jsonl, pairs.jsonl, timings.json,
                         checkpoints/, adapter/, model/, eval*.json(l)           iteration k

An evaluation folder outside a run (`codelutra eval --output`) holds the same three eval files, and
skipped.jsonl.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvalFiles:
    """The files of one evaluation: its result, the completions and their verdicts."""

    dir: Path

    @property
    def result(self) -> Path:
        return self.dir / "eval.json"

    @property
    def samples(self) -> Path:
        return self.dir / "eval_samples.jsonl"

    @property
    def verdicts(self) -> Path:
        return self.dir / "eval_verdicts.jsonl"

    @property
    def skipped(self) -> Path:
        """`codelutra eval`: the problems of the task set left out, with their reasons (a run keeps its own)."""
        return self.dir / "skipped.jsonl"

    @property
    def inputs(self) -> Path:
        """What the results are of (model, tasks, settings): a folder is reused only for the same."""
        return self.dir / "eval_inputs.json"

    @property
    def vote_samples(self) -> Path:
        """With `eval.vote`: the candidates voted on, the choice per problem, and its verdicts."""
        return self.dir / "vote_samples.jsonl"

    @property
    def vote_choices(self) -> Path:
        return self.dir / "vote_choices.jsonl"

    @property
    def vote_verdicts(self) -> Path:
        return self.dir / "vote_verdicts.jsonl"


@dataclass(frozen=True)
class IterationFiles:
    """The folder of iteration k (k = 0: the base model, evaluated only)."""

    dir: Path
    k: int | None = None  # None: a training folder outside a run (`train_policy`'s out_dir)

    @property
    def eval(self) -> EvalFiles:
        return EvalFiles(self.dir)

    @property
    def samples(self) -> Path:
        return self.dir / "samples.jsonl"

    @property
    def verdicts(self) -> Path:
        return self.dir / "verdicts.jsonl"

    @property
    def pairs(self) -> Path:
        return self.dir / "pairs.jsonl"

    @property
    def timings(self) -> Path:
        return self.dir / "timings.json"

    @property
    def train_info(self) -> Path:
        """How many pairs training took (its seconds are in timings.json, with every stage's)."""
        return self.dir / "train.json"

    @property
    def train_log(self) -> Path:
        """The trainer's logged steps: loss, reward margins, the chosen and rejected answers' log-probs."""
        return self.dir / "train_log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def model(self) -> Path:
        return self.dir / "model"

    @property
    def model_config(self) -> Path:
        """Written last by training, atomically: the next policy is saved once it exists."""
        return self.model / "config.json"

    @property
    def trained(self) -> bool:
        return self.model_config.exists()


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of(cls, output_dir: str | Path, name: str) -> RunLayout:
        return cls(Path(output_dir).expanduser().resolve() / "runs" / name)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plot(self) -> Path:
        return self.root / "accuracy.png"

    def skipped(self, which: str) -> Path:
        """The problems of task set `which` (train_tasks, eval_tasks) left out, with their reasons."""
        return self.root / f"skipped_{which}.jsonl"

    def iteration(self, k: int) -> IterationFiles:
        return IterationFiles(self.root / f"iter_{k}", k)

    def iterations(self) -> list[IterationFiles]:
        """The iterations present on disk, in order (iter_0 first)."""
        found = [int(p.name[5:]) for p in self.root.glob("iter_*") if p.is_dir() and p.name[5:].isdigit()]
        return [self.iteration(k) for k in sorted(found)]

    @staticmethod
    def of_iteration(path: str | Path) -> tuple[RunLayout, int] | None:
        """The run and iteration number of a path that names an iteration folder (RUN_DIR/iter_K), else None."""
        path = Path(path)
        if path.name.startswith("iter_") and path.name[5:].isdigit():
            return RunLayout(path.parent), int(path.name[5:])
        return None
