"""`codelutra ask`: one question about a database, answered with a query and its result.

The model's query is untrusted like every candidate: it runs in the SQL sandbox (read-only database,
reads only, time and memory limits), never in this process. With `vote` > 0 the model samples that
many queries and the answer is the voted one (`codelutra.loop.vote`), as in `codelutra eval --vote`.
Unless told otherwise, the query is decoded under the database's grammar (`codelutra.tasks.sql_grammar`):
a user's own database is one the model never saw, where inventing tables and columns is its usual failure.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from codelutra.config import RunConfig
from codelutra.errors import UserError
from codelutra.execution.sql import QueryResult
from codelutra.generation.types import SamplingParams
from codelutra.loop.vote import Ballot, Vote, cast_ballots, choose
from codelutra.tasks import Task
from codelutra.tasks.kinds import SQL, TaskSet
from codelutra.tasks.prompts import render_schema


@dataclass(frozen=True)
class Answer:
    sql: str | None  # None: the model wrote no SQL
    result: QueryResult | None  # None when there was no SQL to run
    vote: Vote | None  # None when answered greedily
    candidates: int


def decoding_constraint(requested: str | None, backend: str) -> tuple[str, str]:
    """ask's `generation.constrain` and the line that tells the user: the scoped grammar unless told otherwise
    (`requested`, from --constrain) or not possible here (the openai backend takes none). The grammar is the
    database engine's dialect (SQLite, DuckDB or PostgreSQL); `scope` beat `schema` by 1.9 points (README)."""
    if requested == "none":
        return "none", "decoding: unconstrained (--constrain none)"
    if requested is None and backend == "openai":
        return "none", "decoding: unconstrained (the openai backend takes no grammar)"
    if requested == "schema":
        return "schema", "decoding: under the database's grammar, so only its tables and columns (--constrain none: off)"
    return "scope", (
        "decoding: under the database's grammar, so only its tables and columns, and a one-table query only its "
        "table's (--constrain none: off)"
    )


def read_schema(db: str, style: str) -> str:
    """The database's schema as the prompt shows it; a database that cannot be read is the user's error."""
    try:
        return render_schema(db, style)
    except sqlite3.Error as e:
        raise UserError(f"--db {db}: cannot read it as a database: {e}") from None


def ask(model_path: str, db: str, question: str, cfg: RunConfig, *, vote: int = 0) -> Answer:
    """Generate a query for `question` (greedily, or `vote` samples and vote) and run it on `db`.

    `db` is an address as `engines.usable_address` returns it. An empty question, a bad database or a
    prompt longer than the model's context is refused here, before the model's weights load.
    """
    from codelutra.generation.backends import open_backend
    from codelutra.loop.stages import prompts_too_long
    from codelutra.tasks.sql_grammar import prompt_grammars

    if not question.strip():
        raise UserError("question: empty; ask something about the database")
    read_schema(db, cfg.prompt.schema_style)
    task = Task(id="ask", question=question, gold="", db_path=db)
    max_new_tokens = SQL.max_new_tokens(cfg.eval.max_new_tokens)
    [too_long] = prompts_too_long(TaskSet.of([task]), model_path, prompt=cfg.prompt, max_new_tokens=max_new_tokens, generation=cfg.generation)
    if too_long:
        reason, length = too_long
        raise UserError(f"question: {reason} ({length})")
    sampling = dict(n=vote, temperature=cfg.eval.vote_temperature, top_p=cfg.eval.vote_top_p) if vote else {}
    params = SamplingParams(max_new_tokens=max_new_tokens, batch_size=cfg.eval.batch_size, keep_logprobs=True, **sampling)
    grammars = prompt_grammars([task], cfg.generation.constrain)
    with open_backend(cfg.generation, model_path) as generate:
        [completions] = generate(
            [SQL.messages(task, cfg.prompt)], answer_prefix=SQL.answer_prefix(cfg.prompt), params=params, grammars=grammars
        )
    sqls = [SQL.extract(c.text) for c in completions]
    [ballots] = cast_ballots(
        [(db, sqls, [c.logprob for c in completions])], timeout_s=cfg.verify.timeout_s, workers=cfg.verify.workers
    )
    if not vote:
        return Answer(sqls[0], ballots[0].result, None, 1)
    chosen = choose(ballots)
    ballot: Ballot = ballots[chosen.chosen]
    return Answer(ballot.sql, ballot.result, chosen, vote)


def result_table(rows: list[tuple], max_rows: int):
    """The first `max_rows` rows as a rich table, then how many there are; the sandbox returns rows only,
    so columns are numbered."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    shown = rows[:max_rows]
    table = Table()
    for column in range(len(rows[0]) if rows else 1):
        table.add_column(f"#{column + 1}")
    for row in shown:
        table.add_row(*("NULL" if value is None else str(value) for value in row))
    count = f"{len(rows)} rows" + (f", first {len(shown)} shown" if len(shown) < len(rows) else "")
    return Group(table, Text(count))
