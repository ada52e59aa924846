"""The speed benchmark's sampling stages: tokens/s per batch size, and the shared-prefix sampler against plain `generate`."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time

from flops import forward_gflops, matmul_stage
from speed_tasks import task_config, train_tasks
from stage import LIBRARIES, measure, result_row, significant, with_ratios

from codelutra.console import console
from codelutra.generation.types import SamplingParams
from codelutra.tasks.kinds import SQL


def _sampling_call(model_path: str, task_set: str, problems: int, n: int, max_new_tokens: int | None, batch_size: int | None = None, **options):
    """What every sampling stage here times: the task set's first `problems` training prompts, the model, and the
    sampler bound to them with the task set's temperature and top_p, its batch size and token budget unless given.

    Returns (tasks, model, messages, params, run); `options` go to `generate` (e.g. shared_prefix).
    """
    from codelutra.generation.sampler import generate
    from codelutra.models import load_model, load_tokenizer

    cfg = task_config(task_set)
    tasks, prompt, s = train_tasks(task_set, problems), cfg.prompt, cfg.sampling
    model, tokenizer = load_model(model_path), load_tokenizer(model_path)
    messages = [SQL.messages(task, prompt) for task in tasks]
    params = SamplingParams(
        n=n, temperature=s.temperature, top_p=s.top_p, max_new_tokens=max_new_tokens or SQL.max_new_tokens(s.max_new_tokens),
        batch_size=batch_size or s.batch_size, seed=0, keep_logprobs=True,
    )  # fmt: skip
    run = functools.partial(generate, model, tokenizer, answer_prefix=SQL.answer_prefix(prompt), params=params, **options)
    return tasks, model, messages, params, run


def sample_stage(model_path: str, task_set: str, problems: int, samples: int, batch_size: int) -> dict:
    """Sample with the project's defaults (temperature, top_p, max_new_tokens) and, as the sampling stage's
    backend does, oneDNN linear layers; time the generation only."""
    from codelutra.candidates import sample_row
    from codelutra.generation.onednn_linear import onednn_linear_layers

    tasks, model, messages, _, run = _sampling_call(model_path, task_set, problems, samples, None, batch_size)
    with onednn_linear_layers(model):
        run(messages[:1])  # warm-up: first-call costs are not throughput
        start = time.perf_counter()
        completions = run(messages)
        seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for row in completions for c in row)
    samples = [sample_row(t.id, row) for t, row in zip(tasks, completions)]
    return {"samples": samples, "tokens": tokens, "seconds": seconds}


def measure_sampling(model: str, sizes: dict) -> tuple[list[dict], list[dict]]:
    """Tokens/s per batch size; also returns the samples of the largest batch size for the later stages."""
    rows, samples = [], []
    for batch_size in sorted(sizes["batch_sizes"]):
        console.print(f"speed: sampling {sizes['problems']} problems x {sizes['samples_per_problem']}, batch size {batch_size}")
        m = measure(sample_stage, model, sizes["tasks"], sizes["problems"], sizes["samples_per_problem"], batch_size, preload=LIBRARIES)
        out = m["value"]
        # the rate is over generation alone (the stage's seconds include loading the model)
        rows.append(result_row(f"batch {batch_size} sequences", out["tokens"], "tokens", {**m, "seconds": out["seconds"]}, f"{m['seconds']:.1f} s with loading the model"))
        samples = out["samples"]
    return with_ratios(rows, rows[0]), samples


# ---------------------------------------------------------------------------------------------
# Shared-prefix sampling against plain generate

# Problems: the training pool's, database after database (`_train_tasks`), as a batch of the loop holds them;
# n = 8 takes a twelfth of them. Full: n = 1 fills the 64-sequence batch three times, as a sampling stage does
# (the default run samples 480 problems), and n = 8 twice (16 x 8 rows). max_new_tokens: the project's
# default, shorter when quick.
SHARED_SAMPLING_SIZES = {
    "full": {"problems": 192, "max_new_tokens": 64},
    "quick": {"problems": 24, "max_new_tokens": 32},
}


def shared_sampling_stage(model_path: str, task_set: str, problems: int, n: int, max_new_tokens: int, shared_prefix: bool, onednn: bool) -> dict:
    """Sample with the task set's temperature, top_p and batch size; time the generation and count the tokens computed.

    `onednn`: with the linear layers run by oneDNN as the sampling stage's backend runs them (`onednn_linear`).
    """
    from codelutra.generation.onednn_linear import onednn_linear_layers

    _, model, messages, params, run = _sampling_call(model_path, task_set, problems, n, max_new_tokens, shared_prefix=shared_prefix)
    computed, forward = [0], model.forward

    def counting_forward(*args, **kwargs):  # every token a forward pass is given, padding included
        computed[0] += kwargs["input_ids"].numel()
        return forward(*args, **kwargs)

    with onednn_linear_layers(model) if onednn else contextlib.nullcontext():
        run(messages[:1])  # warm-up: first-call costs are not throughput
        model.forward = counting_forward
        start = time.perf_counter()
        completions = run(messages)
        seconds = time.perf_counter() - start
        model.forward = forward
        out = {"seconds": seconds, "computed": computed[0], "parameters": sum(p.numel() for p in model.parameters())}
        if not shared_prefix and not onednn:  # the same batches, prompts only: what computing no prompt token would save at most
            start = time.perf_counter()
            run(messages, params=dataclasses.replace(params, max_new_tokens=1, keep_logprobs=False))
            out["prefill_seconds"] = time.perf_counter() - start
    return {**out, "tokens": sum(len(c.token_ids) for row in completions for c in row)}


# The rows of each n: (label, shared_prefix, onednn). The first is the baseline of the ratios; the second
# holds the linear layers' kernel as the sampler has it, so that the third's gain over it is token sharing's.
SHARED_SAMPLING_VARIANTS = (
    ("plain generate", False, False),
    ("plain generate, oneDNN linear layers", False, True),
    ("shared-prefix sampler", True, True),
)


def measure_shared_sampling(model: str, task_set: str, sizes: dict) -> list[dict]:
    """Tokens/s of plain generate and of the shared-prefix sampler on the same prompts, n = 1 and n = 8.

    Each row's note gives its achieved GFLOP/s (forward FLOPs taken as 2 x parameters x tokens computed,
    padding included) beside the plain matmul's; the sampler's, its ratio to plain generate with the
    same oneDNN layers.
    """
    matmul = measure(matmul_stage, preload=("torch",))["value"]
    rows = []
    for n, problems in ((1, sizes["problems"]), (8, max(1, sizes["problems"] // 12))):
        rates = {}
        for variant, shared, onednn in SHARED_SAMPLING_VARIANTS:
            label = f"{variant}, {problems} problems x {n}"
            console.print(f"speed: sampling, {label}")
            m = measure(shared_sampling_stage, model, task_set, problems, n, sizes["max_new_tokens"], shared, onednn, preload=LIBRARIES)
            out = m["value"]
            gflops = forward_gflops(out["parameters"], out["computed"], out["seconds"])
            note = f"{out['computed']} tokens computed; {gflops:.3g} GFLOP/s, fp32 matmul {matmul:.3g} GFLOP/s"
            if "prefill_seconds" in out:  # decoding the same rows as generate does, with prefill free, reaches this ratio
                decode = out["seconds"] - out["prefill_seconds"]
                note += f"; its prefill alone {out['prefill_seconds']:.3g} s: with a free prefill and its decoding, {out['seconds'] / decode:.3g}x"
            row = result_row(label, out["tokens"], "tokens", {**m, "seconds": out["seconds"]}, note)
            rates[(shared, onednn)] = row["rate"]
            if shared:
                row["note"] += f"; {row['rate'] / rates[(False, True)]:.3g}x plain generate with oneDNN layers"
            rows.append({**row, "ratio": significant(row["rate"] / rates[(False, False)]), "n": n})
    return rows


def shared_sampling_ratio_line(rows: list[dict]) -> str:
    """The line `--quick` ends with: the lower of the n = 1 and n = 8 ratios."""
    ratio = min(row["ratio"] for row in rows if row["variant"].startswith("shared"))
    return f"ratio sampling_shared_vs_plain {ratio:.3g}x"


# ---------------------------------------------------------------------------------------------
# Schema-constrained sampling against unconstrained (generation.constrain: schema)


def constrained_sampling_stage(model_path: str, task_set: str, problems: int, n: int, max_new_tokens: int, constrain: str) -> dict:
    """The sampling stage's sampler (shared prefix, oneDNN layers), with or without each database's grammar.

    The timed span includes building the grammars (`prompt_grammars`, once per database, as a run does), so the
    constrained row pays for everything that constraining costs; the grammars' share is returned beside it.
    """
    from codelutra.generation.onednn_linear import onednn_linear_layers
    from codelutra.tasks.sql_grammar import prompt_grammars, schema_grammar

    tasks, model, messages, _, run = _sampling_call(model_path, task_set, problems, n, max_new_tokens)
    with onednn_linear_layers(model):
        run(messages[:1])  # warm-up: first-call costs are not throughput (the grammar cache stays cold)
        schema_grammar.cache_clear()
        start = time.perf_counter()
        grammars = prompt_grammars(tasks, constrain)
        grammar_seconds = time.perf_counter() - start
        completions = run(messages, grammars=grammars)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "grammar_seconds": grammar_seconds,
        "tokens": sum(len(c.token_ids) for row in completions for c in row),
    }


def measure_constrained_sampling(model: str, task_set: str, sizes: dict) -> list[dict]:
    """Tokens/s with and without the schema's grammar on the same prompts, n = 1 and n = 8.

    A constrained answer may be shorter or longer than the free one, so the ratio compares seconds per token;
    each row's note also gives the whole call's seconds.
    """
    rows = []
    for n, problems in ((1, sizes["problems"]), (8, max(1, sizes["problems"] // 12))):
        free = None
        for constrain in ("none", "schema"):
            label = f"{'unconstrained' if constrain == 'none' else 'schema grammar'}, {problems} problems x {n}"
            console.print(f"speed: sampling, {label}")
            m = measure(
                constrained_sampling_stage, model, task_set, problems, n, sizes["max_new_tokens"], constrain, preload=LIBRARIES
            )
            out = m["value"]
            note = f"{out['seconds']:.3g} s for the call"
            if constrain == "schema":
                note += f", {out['grammar_seconds']:.2g} s of it building the grammars; seconds per token {free['rate'] / (out['tokens'] / out['seconds']):.3g}x unconstrained"
            row = result_row(label, out["tokens"], "tokens", {**m, "seconds": out["seconds"]}, note)
            free = free or row
            rows.append({**row, "ratio": significant(row["rate"] / free["rate"]), "n": n})
    return rows
