"""What the model is shown for a task, and how gold code is written as its answer.

Prompt length is the main cost of generating on a CPU, so the default schema style is the
shortest one that still names every table, column, primary key and foreign key.
"""

from __future__ import annotations

import functools
import re
import sqlite3

from codelutra.errors import UserError
from codelutra.execution.engines import DIALECTS, engine_of
from codelutra.tasks import Task
from codelutra.tasks.catalog import SQLITE_TABLES, read_only_sqlite, read_tables

SCHEMA_STYLES = ("compact", "create")

INSTRUCTION = "Answer with one {dialect} query in a ```sql code block and nothing else."
PYTHON_INSTRUCTION = "Answer with Python code in a ```python code block and nothing else."

_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def instruction(db_path: str) -> str:
    """The closing instruction, naming the dialect of the task's database engine."""
    return INSTRUCTION.format(dialect=DIALECTS[engine_of(db_path)])


@functools.cache
def render_schema(db_path: str, style: str = "compact") -> str:
    """The schema of a database (a SQLite path, or a DuckDB or PostgreSQL address) as text for a prompt.

    "compact": one line per table, `singer(singer_id PK, name, country)`, then one line listing the
    foreign keys; names lowercased where the engine ignores their case (SQLite, DuckDB).
    "create": CREATE TABLE statements, each on one line: SQLite's own, or for the other engines
    written from their catalog (columns with types, primary and foreign keys).
    """
    if style not in SCHEMA_STYLES:
        raise UserError(f"unknown schema style {style!r}: expected one of {', '.join(SCHEMA_STYLES)}")
    if engine_of(db_path) != "sqlite":
        tables = read_tables(db_path)
        fold_case = engine_of(db_path) == "duckdb"
        render = _create_statements if style == "create" else _compact_tables
        return render(tables, fold_case)
    with read_only_sqlite(db_path) as db:
        tables = db.execute(SQLITE_TABLES).fetchall()
        if style == "create":
            return "\n".join(" ".join(sql.split()) for _, sql in tables)
        return _compact_schema(db, [name for name, _ in tables])


def _compact_schema(db: sqlite3.Connection, tables: list[str]) -> str:
    lines, foreign_keys = [], []
    for table in tables:
        # PRAGMA table_info rows: cid, name, type, notnull, default, pk (position in the primary key, 0 if none)
        columns = [_name(name) + (" PK" if pk else "") for _, name, _, _, _, pk in _pragma(db, "table_info", table)]
        lines.append(f"{_name(table)}({', '.join(columns)})")
        # PRAGMA foreign_key_list rows: id, seq, parent table, column, parent column (None: the parent's key), ...
        for _, seq, parent, column, parent_column, *_ in _pragma(db, "foreign_key_list", table):
            if parent_column is None:
                parent_key = [c[1] for c in sorted(_pragma(db, "table_info", parent), key=lambda c: c[5]) if c[5]]
                parent_column = parent_key[seq] if seq < len(parent_key) else "?"
            foreign_keys.append(f"{_name(table)}.{_name(column)} = {_name(parent)}.{_name(parent_column)}")
    if foreign_keys:
        lines.append("Foreign keys: " + "; ".join(foreign_keys))
    return "\n".join(lines)


def _compact_tables(tables: list, fold_case: bool) -> str:
    """The compact style for tables read from a catalog (`catalog.Table`)."""
    def name(text: str) -> str:
        return _name(text, fold_case)

    lines, foreign_keys = [], []
    for table in tables:
        columns = [name(column) + (" PK" if column in table.primary_key else "") for column, _ in table.columns]
        lines.append(f"{name(table.name)}({', '.join(columns)})")
        for columns, parent, parent_columns in table.foreign_keys:
            for column, parent_column in zip(columns, parent_columns):
                foreign_keys.append(f"{name(table.name)}.{name(column)} = {name(parent)}.{name(parent_column)}")
    if foreign_keys:
        lines.append("Foreign keys: " + "; ".join(foreign_keys))
    return "\n".join(lines)


def _create_statements(tables: list, fold_case: bool) -> str:
    """CREATE TABLE statements, one a line, for tables read from a catalog (`catalog.Table`)."""
    def names(items: list[str]) -> str:
        return ", ".join(_name(item, fold_case) for item in items)

    statements = []
    for table in tables:
        parts = [f"{_name(column, fold_case)} {data_type}" for column, data_type in table.columns]
        if table.primary_key:
            parts.append(f"PRIMARY KEY ({names(table.primary_key)})")
        for columns, parent, parent_columns in table.foreign_keys:
            parts.append(f"FOREIGN KEY ({names(columns)}) REFERENCES {_name(parent, fold_case)} ({names(parent_columns)})")
        statements.append(f"CREATE TABLE {_name(table.name, fold_case)} ({', '.join(parts)})")
    return "\n".join(statements)


def _pragma(db: sqlite3.Connection, pragma: str, table: str) -> list[tuple]:
    return db.execute(f"PRAGMA {pragma}({_quoted(table)})").fetchall()


def _name(name: str, fold_case: bool = True) -> str:
    """A name (lowercased when the engine ignores case), quoted when it is not a plain identifier (`"%_change_2007"`)."""
    if fold_case:
        name = name.lower()
    return name if _PLAIN_NAME.fullmatch(name) else _quoted(name)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_messages(task: Task, schema_style: str = "compact") -> list[dict[str, str]]:
    """The chat for one task: a single user message with the schema, question, hint and instruction."""
    lines = [render_schema(task.db_path, schema_style), "", f"Question: {task.question}"]
    if task.evidence:
        lines.append(f"Hint: {task.evidence}")
    lines.append(instruction(task.db_path))
    return [{"role": "user", "content": "\n".join(lines)}]


def format_answer(sql: str) -> str:
    """A gold query written the way the instruction asks the model to answer."""
    return "```sql\n" + sql.strip().rstrip(";").strip() + "\n```"


def python_messages(task: Task) -> list[dict[str, str]]:
    """The chat for one Python task: the problem as its loader wrote it, then the instruction."""
    return [{"role": "user", "content": f"{task.question}\n{PYTHON_INSTRUCTION}"}]


def format_python_answer(code: str) -> str:
    """Gold code written the way the instruction asks the model to answer (indentation kept)."""
    return "```python\n" + code.rstrip() + "\n```"
