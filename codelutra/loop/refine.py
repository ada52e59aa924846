"""The CodeLutra refinement loop: sample, verify, pair, train, evaluate; iterate.

Every stage's artifact lives under `runs/<name>/iter_<k>/`; a stage whose artifact exists is not
redone, so re-running the same command after a crash resumes at the first missing stage.
"""

from __future__ import annotations

import ctypes
import gc
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from codelutra.artifacts import atomic_write_text, read_json, write_json
from codelutra.candidates import Candidate, Pair, read_pairs, unsolved_problems, write_pairs
from codelutra.config import RunConfig, dump_config, load_config
from codelutra.console import console
from codelutra.errors import UserError
from codelutra.generation.types import SamplingParams
from codelutra.layout import IterationFiles, RunLayout
from codelutra.loop.evaluate import evaluate_model
from codelutra.loop.report import write_report
from codelutra.loop.stages import (
    generate_completions,
    judge_completions,
    prompts_that_fit,
)
from codelutra.models import resolve_model
from codelutra.tasks import Skipped
from codelutra.tasks.kinds import TaskSet
from codelutra.tasks.sources import load_tasks, print_skipped, write_skipped
from codelutra.training.pairs import iteration_pairs

HEARTBEAT_S = 5.0  # how often a running stage's seconds so far are written to timings.json
# Settings a finished or moved run may be resumed with: none changes an iteration already done. More
# iterations or a lower min_gain extend the run; output_dir and name are where its folder now lies.
RESUMABLE_CHANGES = ("max_iterations", "min_gain", "output_dir", "name")


class Refiner:
    """Runs one configured refinement; `run()` returns the evaluation of the base model and each iteration."""

    def __init__(self, cfg: RunConfig):
        if cfg.generation.backend == "openai":
            raise UserError(
                "generation.backend: openai serves a fixed model, but the refinement loop samples from a new policy "
                "every iteration; use transformers or vllm for `codelutra run` (openai is for `codelutra eval`)"
            )
        self.cfg = cfg
        self.layout = RunLayout.of(cfg.output_dir, cfg.name)
        self.run_dir = self.layout.root
        self.base_model = ""  # the base model's folder, once resolved
        self.train_tasks = TaskSet.of([])
        self.eval_tasks = TaskSet.of([])
        self.skipped: dict[str, list[Skipped]] = {}  # per task set: the problems left out

    def run(self) -> list[dict]:
        # The run claims its name only once the model and both task sets have loaded, so that a corrected
        # command is not refused as "a different configuration".
        policy = self.base_model = resolve_model(self.cfg.model.name)
        self.train_tasks = self._load("train_tasks", policy)
        self.eval_tasks = self._load("eval_tasks", policy)
        self._claim_run_dir()
        self._report_skipped()
        overlap = ({t.db_id for t in self.train_tasks} & {t.db_id for t in self.eval_tasks}) - {""}
        if overlap:
            console.print(f"[yellow]note:[/] train and eval tasks share databases: {', '.join(sorted(overlap))}")

        history = [self._evaluate(policy, 0)] if self.cfg.eval.base else []
        for k in range(1, self.cfg.max_iterations + 1):
            policy = self._iterate(k, policy)
            history.append(self._evaluate(policy, k))
            if len(history) < 2:
                continue  # eval.base: false, so iteration 1 has nothing to gain over
            gain = history[-1]["accuracy"] - history[-2]["accuracy"]
            if gain < self.cfg.min_gain and k < self.cfg.max_iterations:
                console.print(f"iteration {k} gained {gain:+.1%} < min_gain {self.cfg.min_gain:.1%}: stopping")
                break
        write_report(self.layout, history, self.cfg)
        return history

    def _claim_run_dir(self) -> None:
        """Record the config; refuse to resume a run that was started with a different one.

        The stored config is read back through the current schema, so a setting added since (with
        its default) does not stop a run from resuming; token budgets compare as resolved, so a run
        stored with `max_new_tokens: 64` resumes where the task kind's budget is 64. The settings in
        `RESUMABLE_CHANGES` may differ: the stored config takes the new values (atomically), and the
        run goes on from its last finished iteration, or stops earlier.
        """
        path = self.layout.config
        if not path.exists():
            atomic_write_text(path, dump_config(self.cfg))
            console.print(f"run folder: {self.run_dir}")
            return
        try:
            stored = load_config(path)
            same = self._comparable(stored) == self._comparable(self.cfg)
        except UserError:
            same = False
        if not same:
            raise UserError(
                f"{path}: this run was started with a different configuration; "
                "choose another name (--set name=...) or delete the folder to start over"
            )
        changes = {key: (getattr(stored, key), getattr(self.cfg, key)) for key in RESUMABLE_CHANGES}
        changes = {key: values for key, values in changes.items() if values[0] != values[1]}
        if changes:
            atomic_write_text(path, dump_config(stored.model_copy(update={key: new for key, (_, new) in changes.items()})))
        shown = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changes.items())
        console.print(f"resuming run in {self.run_dir}" + (f" ({shown})" if shown else ""))

    def _comparable(self, cfg: RunConfig) -> dict:
        """`cfg` as it runs, less the settings a run may change when resumed; token budgets resolved where null."""
        data = cfg.model_dump(exclude=set(RESUMABLE_CHANGES))
        data["sampling"]["max_new_tokens"] = self.train_tasks.kind.max_new_tokens(cfg.sampling.max_new_tokens)
        data["eval"]["max_new_tokens"] = self.eval_tasks.kind.max_new_tokens(cfg.eval.max_new_tokens)
        return data

    def _load(self, which: str, policy: str) -> TaskSet:
        """A task set, less the problems whose prompt does not fit the model (kept in `skipped` like any bad problem)."""
        source = getattr(self.cfg, which)
        tasks, skipped = load_tasks(source, self.cfg.verify)
        training = which == "train_tasks"
        budget = (self.cfg.sampling if training else self.cfg.eval).max_new_tokens
        tasks, too_long = prompts_that_fit(
            tasks,
            policy,
            source=source.path,
            prompt=self.cfg.prompt,
            max_new_tokens=tasks.kind.max_new_tokens(budget),
            generation=self.cfg.generation,
            max_length=self.cfg.train.max_length if training else None,
        )
        self.skipped[which] = skipped + too_long  # reported once the run folder is claimed
        return tasks

    def _report_skipped(self) -> None:
        """List each task set's skipped problems in the run folder (once it is claimed) and print them by cause."""
        for which, tasks in (("train_tasks", self.train_tasks), ("eval_tasks", self.eval_tasks)):
            if self.skipped[which]:
                write_skipped(self.layout.skipped(which), self.skipped[which])
            print_skipped(which, len(tasks), self.skipped[which], self.layout.skipped(which))

    def _evaluate(self, policy: str, k: int) -> dict:
        it = self.layout.iteration(k)
        with self._timed(it, "eval", it.eval.result):
            result = evaluate_model(
                policy,
                self.eval_tasks,
                it.dir,
                prompt=self.cfg.prompt,
                eval_cfg=self.cfg.eval,
                verify=self.cfg.verify,
                label=f"iter {k} eval",
                generation=self.cfg.generation,
                model_name=self.cfg.model.name if k == 0 else str(it.model.relative_to(self.run_dir)),
            )
        console.print(f"iter {k}: held-out accuracy {result['accuracy']:.1%} ({result['n']} problems)")
        return {"iteration": k, **result}

    def _iterate(self, k: int, policy: str) -> str:
        """Sample from `policy`, verify, pair, and train the next policy with `policy` (or the base model) as reference."""
        cfg, it = self.cfg, self.layout.iteration(k)
        if it.trained:
            return str(it.model)
        s = cfg.sampling
        tasks = self._iteration_tasks(k)
        with self._timed(it, "sample", it.samples):
            sampled = generate_completions(
                policy,
                tasks,
                it.samples,
                prompt=cfg.prompt,
                params=SamplingParams(
                    n=s.n,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    max_new_tokens=self.train_tasks.kind.max_new_tokens(s.max_new_tokens),
                    batch_size=s.batch_size,
                    seed=cfg.seed * 1000 + k,
                    keep_logprobs=True,
                ),
                description=f"iter {k}: sampling {s.n} per problem",
                generation=cfg.generation,
            )
        with self._timed(it, "verify", it.verdicts):
            judged = judge_completions(tasks, sampled, it.verdicts, verify=cfg.verify, description=f"iter {k}: verifying")
        with self._timed(it, "pair", it.pairs):
            pairs = self._pairs(k, tasks, judged, it.pairs)
        if not pairs:
            raise UserError(f"iteration {k}: no preference pairs (every sample was correct); nothing left to learn")
        from codelutra.training.launch import launch_training
        from codelutra.training.trainer import train_policy

        reference = self.base_model if cfg.train.reference == "base" else policy
        # train.lora_adapter: continued trains the previous iteration's adapter on (iteration 1 has none yet)
        adapter = (self.base_model, str(self.layout.iteration(k - 1).adapter)) if cfg.train.lora_adapter == "continued" and k > 1 else None
        console.print(f"iter {k}: training on {len(pairs)} pairs ({cfg.train.loss}, ref = iteration {0 if cfg.train.reference == 'base' else k - 1})")
        with self._timed(it, "train", it.model_config):
            if cfg.train.processes > 1:
                config_path = self.layout.config
                new_policy = launch_training(
                    policy, it.pairs, it.dir, config_path, seed=cfg.seed + k, processes=cfg.train.processes,
                    reference=reference, adapter=adapter,
                )
            else:
                new_policy = train_policy(policy, pairs, it.dir, cfg.train, seed=cfg.seed + k, reference_path=reference, adapter=adapter)
        write_json(it.train_info, {"pairs": len(pairs)})  # its seconds are timings.json's "train"
        return str(new_policy)

    def _iteration_tasks(self, k: int) -> TaskSet:
        """The training problems of iteration k: all of them, or `train_tasks.per_iteration` drawn from the pool.

        "fresh": iteration k takes the next slice of one seeded shuffle of the pool (wrapping round), so
        iterations see different problems for as long as the pool lasts. "failed_first": the problems
        that iteration k-1 sampled without a correct answer come first, then fresh ones.
        """
        source, pool = self.cfg.train_tasks, self.train_tasks
        if source.per_iteration is None or source.per_iteration >= len(pool):
            return pool
        m = source.per_iteration
        order = list(pool)
        random.Random(f"{self.cfg.seed}:per_iteration").shuffle(order)
        start = (k - 1) * m
        fresh = [order[(start + i) % len(order)] for i in range(m)]
        if source.per_iteration_order == "fresh" or k == 1:
            return pool.subset(fresh)
        previous = self.layout.iteration(k - 1).verdicts
        failed = unsolved_problems(previous) if previous.exists() else set()
        chosen = [t for t in order if t.id in failed][:m]
        taken = {t.id for t in chosen}
        return pool.subset(chosen + [t for t in fresh if t.id not in taken][: m - len(chosen)])

    def _timed(self, it: IterationFiles, stage: str, artifact: Path):
        return stage_timer(it.timings, stage, artifact)

    def _pairs(self, k: int, tasks: TaskSet, judged: list[list[Candidate]], path: Path) -> list[Pair]:
        if path.exists():
            return read_pairs(path)
        pairs = iteration_pairs(tasks, judged, prompt=self.cfg.prompt, cfg=self.cfg.pairs, seed=self.cfg.seed + k)
        write_pairs(path, pairs)
        from_gold = sum(p.chosen_source == "gold" for p in pairs)
        console.print(f"iter {k}: {len(pairs)} pairs ({from_gold} with the gold code as the correct side)")
        return pairs


@contextmanager
def stage_timer(path: Path, stage: str, artifact: Path, heartbeat_s: float = HEARTBEAT_S):
    """Keep the timings file `path`'s `stage` at the seconds the stage has spent, summed over resumptions.

    Written every `heartbeat_s` while the stage runs and at its end, so a process killed outright
    (SIGKILL, out of memory) keeps all but the last heartbeat's seconds; the resumed run adds the rest.
    A stage whose artifact already exists is skipped by its own code and adds nothing.
    """
    if artifact.exists():
        yield
        return
    spent_before = (read_json(path) if path.exists() else {}).get(stage, 0.0)
    start = time.monotonic()

    def write() -> None:
        timings = read_json(path) if path.exists() else {}
        timings[stage] = round(spent_before + time.monotonic() - start, 1)
        write_json(path, timings)

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            write()

    heart = threading.Thread(target=beat, name=f"timings-{stage}", daemon=True)
    heart.start()
    try:
        yield
    finally:  # also when interrupted
        stop.set()
        heart.join()
        write()
        release_freed_memory()


def release_freed_memory() -> None:
    """Give the memory a finished stage freed back to the system before the next stage allocates its own.

    A stage's models and caches are freed when it ends, but glibc keeps freed heap for reuse, so a two-iteration
    run's largest process would carry the first iteration's leftovers into the second's training. `malloc_trim`
    is glibc's; elsewhere the collector's pass is all there is.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
