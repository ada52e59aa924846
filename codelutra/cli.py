"""The `codelutra` command: run a refinement, evaluate a model, judge candidates, ask and export a model.

Bad configuration or data ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

from codelutra.errors import SetupWarning, UserError

MAX_QUESTION_BYTES = 64 * 1024  # read no more of --question-file than this (it is tokenized whole)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _setup_warnings_on_one_line(warnings.showwarning)
            return args.handler(args)
    except UserError as e:
        print(f"codelutra: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codelutra: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _setup_warnings_on_one_line(show):
    """`warnings.showwarning` that prints a SetupWarning as one line, like an error, and leaves the others to `show`."""

    def shown(message, category, *where, **more) -> None:
        if issubclass(category, SetupWarning):
            print(f"codelutra: warning: {message}", file=sys.stderr)
        else:
            show(message, category, *where, **more)

    return shown


def _parser() -> argparse.ArgumentParser:
    from codelutra.config import MAX_VOTE

    parser = argparse.ArgumentParser(prog="codelutra", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="refine a model: sample, verify, pair, train, evaluate; iterate")
    run.add_argument("--config", help="YAML config (default: the embedded default run)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    run.add_argument("--output", help="folder that runs/ goes into (config: output_dir)")
    run.add_argument("--name", help="run name (config: name)")
    run.set_defaults(handler=_run)

    ev = sub.add_parser("eval", help="evaluate a model or a run's iteration on a task set")
    ev.add_argument("--model", default=None,
                    help="RUN_DIR/iter_K, a model directory or Hub id (default: embedded); with --backend openai, the served model's name")
    ev.add_argument("--tasks", default="builtin:heldout", help="Spider/BIRD/MBPP/DS-1000 dir or file, .jsonl, builtin:SPLIT")
    ev.add_argument("--format", default="auto", help="task layout: auto, spider, bird, jsonl, mbpp, humaneval, ds1000")
    ev.add_argument("--limit", type=int, default=None, help="evaluate a fixed random sample of this many problems")
    ev.add_argument("--config", help="YAML config whose prompt/eval/verify settings to use")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    ev.add_argument("--output", help="folder for eval.json and samples (default: eval_results/<model>__<tasks>)")
    ev.add_argument("--backend", choices=["transformers", "vllm", "openai"], help="how to generate (config: generation.backend)")
    ev.add_argument("--base-url", help="openai backend: the API root, e.g. http://127.0.0.1:8000/v1 (config: generation.base_url)")
    ev.add_argument("--constrain", choices=["none", "schema", "scope"],
                    help="SQL answers under the database's grammar; scope: and a one-table query names only its "
                         "table's columns (config: generation.constrain)")
    ev.add_argument("--vote", type=int, default=None, metavar="N",
                    help=f"SQL: also answer by voting over N (at most {MAX_VOTE}) sampled candidates, reported beside "
                         "greedy (config: eval.vote)")
    ev.set_defaults(handler=_eval)

    _add_serving_commands(sub, MAX_VOTE)

    ver = sub.add_parser("verify", help="judge a JSONL batch of candidates (SQL, Python, DS-1000) in the sandbox")
    ver.add_argument("candidates", help="input JSONL: one candidate per line")
    ver.add_argument("--out", required=True, help="output JSONL: one verdict per input line, in input order")
    ver.add_argument("--overwrite", action="store_true", help="replace --out if it exists (else an existing file is refused)")
    ver.add_argument("--timeout", type=float, default=None, help="seconds per candidate (default: the config's verify.timeout_s)")
    ver.add_argument("--workers", type=int, default=None, help="parallel workers (default: one per CPU core)")
    ver.add_argument("--python", default=None, help="interpreter for Python/DS-1000 candidates (default: this one)")
    ver.add_argument("--config", help="YAML config whose verify settings to use (verify.match, verify.variants, ...)")
    ver.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. verify.match=spider")
    ver.set_defaults(handler=_verify)
    return parser


def _run(args) -> int:
    from codelutra.config import load_config
    from codelutra.console import console, tables
    from codelutra.layout import RunLayout
    from codelutra.loop.refine import Refiner
    from codelutra.loop.report import accuracy_table

    overrides = list(args.set)
    if args.output:
        overrides.append(f"output_dir={args.output}")
    if args.name:
        overrides.append(f"name={args.name}")
    cfg = load_config(args.config, overrides)
    flag = "--output" if args.output else "output_dir"
    _require_writable_folder(RunLayout.of(cfg.output_dir, cfg.name).root, flag, named=cfg.output_dir)
    refiner = Refiner(cfg)
    history = refiner.run()
    tables.print(accuracy_table(history, title=f"Held-out execution accuracy, run '{cfg.name}'"))
    console.print(f"report: {refiner.layout.report}")
    return 0


def _eval(args) -> int:
    from codelutra.config import TaskSource, load_config
    from codelutra.console import console, tables
    from codelutra.layout import EvalFiles
    from codelutra.loop.evaluate import evaluate_model
    from codelutra.loop.report import accuracy_table
    from codelutra.loop.stages import prompts_that_fit
    from codelutra.models import EMBEDDED_DEFAULT, resolve_model
    from codelutra.tasks.sources import load_tasks

    overrides = list(args.set)
    if args.backend:
        overrides.append(f"generation.backend={args.backend}")
    if args.base_url:
        overrides.append(f"generation.base_url={args.base_url}")
    overrides += _vote_override(args) + _constrain_override(args)
    cfg = load_config(args.config, overrides)
    if cfg.generation.backend != "openai":
        model = resolve_model(_model_of(args.model or EMBEDDED_DEFAULT))
    elif args.model:
        model = args.model  # the endpoint's name for it, passed through as is
    else:
        raise UserError("--model: name the model the endpoint serves (the openai backend has no default model)")
    out = Path(args.output) if args.output else Path("eval_results") / f"{_slug(args.model or 'embedded')}__{_slug(args.tasks)}"
    _require_writable_folder(out, "--output")
    tasks, skipped = load_tasks(_validated(TaskSource, path=args.tasks, format=args.format, limit=args.limit), cfg.verify)
    tasks, too_long = prompts_that_fit(
        tasks,
        model,
        source=args.tasks,
        prompt=cfg.prompt,
        max_new_tokens=tasks.kind.max_new_tokens(cfg.eval.max_new_tokens),
        generation=cfg.generation,
    )
    settings = dict(prompt=cfg.prompt, eval_cfg=cfg.eval, verify=cfg.verify, generation=cfg.generation)
    result = evaluate_model(model, tasks, out, label="eval", skipped=skipped + too_long, **settings)
    tables.print(accuracy_table([{**result, "model": args.model or EMBEDDED_DEFAULT}], title=f"Execution accuracy on {args.tasks}"))
    console.print(f"results: {EvalFiles(out).result}")
    if tasks.kind.name == "sql":
        copies = f" and on {result['variants']} perturbed copies of it" if result.get("variants") else ""
        console.print(f"scoring: the {result.get('match', 'execution')} rule (verify.match), on each task's database{copies}")
    return 0


def _add_serving_commands(sub, max_vote: int) -> None:
    """`ask` and `export`: using a refined model (`codelutra/serving/`)."""
    ask = sub.add_parser("ask", help="answer a question about a database with a query and its result")
    ask.add_argument("question", nargs="?", help="the question, in words (or --question-file)")
    ask.add_argument("--question-file", metavar="PATH", help="read the question from this UTF-8 file ('-': standard input)")
    ask.add_argument("--model", default=None, help="RUN_DIR/iter_K, a model directory or Hub id (default: embedded)")
    ask.add_argument("--db", required=True,
                     help="the database the query runs on: a SQLite file (or sqlite:///PATH), duckdb:///PATH, "
                          "or a PostgreSQL address (postgresql://user@host/db, service=NAME; never with a password)")
    ask.add_argument("--vote", type=int, default=None, metavar="N",
                     help=f"sample N queries (at most {max_vote}) and answer with the voted one (config: eval.vote)")
    ask.add_argument("--show-schema", action="store_true", help="print the schema the model is shown")
    ask.add_argument("--constrain", choices=["none", "schema", "scope"],
                     help="scope (the default): the query under the database's grammar, naming only its tables and "
                          "columns, and a one-table query only its table's; schema: any of the database's columns; "
                          "none: unconstrained")
    ask.add_argument("--max-rows", type=int, default=20, help="rows of the result to print (default 20)")
    ask.add_argument("--config", help="YAML config whose prompt/eval/verify settings to use")
    ask.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    ask.set_defaults(handler=_ask)

    export = sub.add_parser("export", help="write a model as a GGUF file (llama.cpp, Ollama) or a Hugging Face folder")
    export.add_argument("--model", required=True, help="RUN_DIR/iter_K or a model directory")
    export.add_argument("--format", required=True, choices=["gguf", "hf"], help="gguf: one file; hf: a folder with a model card")
    export.add_argument("--out", required=True, help="the file (gguf) or folder (hf) to write; must not exist yet")
    export.add_argument("--type", default="f16", choices=["f32", "f16", "q8_0"], help="gguf: tensor type (default f16)")
    export.set_defaults(handler=_export)


def _vote_override(args) -> list[str]:
    if args.vote is None:
        return []
    from codelutra.config import MAX_VOTE

    if not 0 <= args.vote <= MAX_VOTE:
        raise UserError(f"--vote: expected 0 (off) to {MAX_VOTE} candidates (config.py's MAX_VOTE says why), got {args.vote}")
    return [f"eval.vote={args.vote}"]


def _constrain_override(args) -> list[str]:
    return [f"generation.constrain={args.constrain}"] if args.constrain else []


def _ask(args) -> int:
    from codelutra.config import load_config
    from codelutra.console import console, tables
    from codelutra.execution.engines import BadAddress, usable_address
    from codelutra.models import EMBEDDED_DEFAULT, resolve_model
    from codelutra.serving.ask import ask, decoding_constraint, read_schema, result_table

    if args.max_rows < 1:
        raise UserError(f"--max-rows: expected at least 1, got {args.max_rows}")
    question = _question(args)
    try:
        db = usable_address(args.db)
    except BadAddress as error:
        raise UserError(f"--db: {error}") from None  # not echoed: it may hold a password
    overrides = list(args.set) + _vote_override(args)
    constrain, decoding = decoding_constraint(args.constrain, load_config(args.config, overrides).generation.backend)
    cfg = load_config(args.config, [*overrides, f"generation.constrain={constrain}"])  # validated with the constraint
    if cfg.generation.backend == "openai" and not args.model:
        raise UserError("--model: name the model the endpoint serves (the openai backend has no default model)")
    model = args.model if cfg.generation.backend == "openai" else resolve_model(_model_of(args.model or EMBEDDED_DEFAULT))
    schema = read_schema(db, cfg.prompt.schema_style)
    if args.show_schema:
        tables.print(schema, markup=False, highlight=False)
    answer = ask(model, db, question, cfg, vote=cfg.eval.vote)
    console.print(decoding)
    if answer.vote is not None:
        agreeing = answer.vote.group_sizes[0] if answer.vote.group_sizes else 0
        console.print(f"voted: {agreeing} of {answer.candidates} candidates agree on this result "
                      f"({len(answer.vote.group_sizes)} distinct results, {answer.vote.failed} failed)")
    if answer.sql is None:
        print("codelutra: the model wrote no SQL", file=sys.stderr)
        return 1
    from rich.syntax import Syntax

    tables.print(Syntax(answer.sql, "sql", word_wrap=True))
    if answer.result.kind != "ok":
        error = answer.result.error if answer.result.error.startswith(answer.result.kind) else f"{answer.result.kind}: {answer.result.error}"
        print(f"codelutra: the query failed: {error}", file=sys.stderr)
        return 1
    tables.print(result_table(answer.result.rows, args.max_rows))
    return 0


def _question(args) -> str:
    """The question: the argument, or the UTF-8 text of --question-file ('-': standard input)."""
    if (args.question is None) == (args.question_file is None):
        raise UserError("question: give it as an argument or with --question-file, one of the two")
    if args.question_file is None:
        return args.question
    source = args.question_file
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_QUESTION_BYTES + 1)
        else:
            with Path(source).expanduser().open("rb") as file:
                data = file.read(MAX_QUESTION_BYTES + 1)
        if len(data) > MAX_QUESTION_BYTES:
            raise UserError(f"--question-file {source}: longer than {MAX_QUESTION_BYTES // 1024} KiB; a question is a few sentences")
        return data.decode("utf-8").strip()
    except OSError as e:
        raise UserError(f"--question-file {source}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"--question-file {source}: not UTF-8 text (byte {e.start})") from None


def _export(args) -> int:
    from codelutra.console import console
    from codelutra.serving.export import export_model

    path = Path(args.model).expanduser()
    if not path.exists():
        raise UserError(f"--model {args.model}: no such directory")
    out = Path(args.out).expanduser()
    _require_writable_folder(out.parent, "--out", named=out)
    written = export_model(path, _model_of(str(path)), args.format, out, tensor_type=args.type)
    console.print(f"wrote {written}")
    return 0


def _verify(args) -> int:
    from codelutra.config import VerifyConfig, load_config
    from codelutra.console import tables
    from codelutra.execution.batch import verify_jsonl

    flags = {"timeout_s": args.timeout, "workers": args.workers, "python": args.python}
    configured = load_config(args.config, args.set).verify.model_dump()
    verify = _validated(VerifyConfig, **{**configured, **{field: value for field, value in flags.items() if value is not None}})
    _require_writable_file(args.out, "--out", not_the_same_as=args.candidates, overwrite=args.overwrite)
    counts = verify_jsonl(args.candidates, args.out, **verify.model_dump())
    tables.print(" ".join(f"{kind}={n}" for kind, n in counts.items()) + f"  -> {args.out}")
    return 0


# The command-line flag of each config field that a flag sets, where the two are spelled differently.
_FLAGS = {"timeout_s": "--timeout"}


def _validated(section, **fields):
    """A config section (TaskSource, VerifyConfig) from command-line values, validated like the config's."""
    from pydantic import ValidationError

    try:
        return section(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0])
        message = err["msg"].removeprefix("Value error, ")
        raise UserError(f"{_FLAGS.get(field, '--' + field)} {fields.get(field)}: {message}") from None


def _require_writable_folder(path: str | Path, flag: str, *, named: str | Path | None = None) -> None:
    """`path` is a folder we may write in, or one we may create: checked before anything is read or written.

    `named`: what the user wrote, where `path` is the folder of a file they named.
    """
    path = Path(path).expanduser()
    shown = named or path
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise UserError(f"{flag} {shown}: {existing} is a file, not a folder")
    try:  # a probe file, gone when closed: permission bits do not tell (root, read-only mounts)
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        raise UserError(f"{flag} {shown}: cannot write in {existing} ({e.strerror or e})") from None


def _require_writable_file(path: str | Path, flag: str, *, not_the_same_as: str | Path, overwrite: bool) -> None:
    """`path` is a file we may write in a writable folder: not the input file under another name, and new
    unless `overwrite` (the `--overwrite` flag) says to replace it."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; name the output file")
    if path.exists() and Path(not_the_same_as).exists() and os.path.samefile(path, not_the_same_as):
        raise UserError(f"{flag} {path}: is the input file {not_the_same_as}; writing it would overwrite the input")
    if path.exists() and not overwrite:
        raise UserError(f"{flag} {path}: already exists; pass --overwrite to replace it (nothing is overwritten unasked)")
    _require_writable_folder(path.parent, flag, named=path)


def _model_of(spec: str) -> str:
    """Accept a run's iteration folder: iter_K/model for K >= 1, the run's base model for iter_0."""
    from codelutra.layout import RunLayout

    path = Path(spec).expanduser()
    found = RunLayout.of_iteration(path)
    if found is None:
        return spec
    run, k = found
    iteration = run.iteration(k)
    if iteration.trained:
        return str(iteration.model)
    if k == 0 and run.config.exists():
        from codelutra.config import load_config

        return load_config(run.config).model.name
    if path.is_dir():
        raise UserError(f"{path}: this iteration has no trained model yet (expected {iteration.model})")
    return spec


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.strip("/.")).strip("_")[-60:] or "x"


if __name__ == "__main__":
    sys.exit(main())
