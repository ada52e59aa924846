"""What the model is shown for a task, and how gold code is written as its answer.

Prompt length is the main cost of generating on a CPU, so the default schema style is the
shortest one that still names every table, column, primary key and foreign key.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from pathlib import Path

from codelutra.errors import UserError
from codelutra.tasks import Task

SCHEMA_STYLES = ("compact", "create")

INSTRUCTION = "Answer with one SQLite query in a ```sql code block and nothing else."
PYTHON_INSTRUCTION = "Answer with Python code in a ```python code block and nothing else."

_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@functools.lru_cache(maxsize=None)
def render_schema(db_path: str, style: str = "compact") -> str:
    """The schema of a SQLite database as text for a prompt.

    "compact": one line per table, `singer(singer_id PK, name, country)`, names lowercased
    (SQLite names are case-insensitive), then one line listing the foreign keys.
    "create": the database's own CREATE TABLE statements, each on one line.
    """
    if style not in SCHEMA_STYLES:
        raise UserError(f"unknown schema style {style!r}: expected one of {', '.join(SCHEMA_STYLES)}")
    path = Path(db_path)
    if not path.is_file():
        raise UserError(f"{db_path}: database not found")
    # Read-only, so that reading a user's database can never change it.
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ).fetchall()
        if style == "create":
            return "\n".join(" ".join(sql.split()) for _, sql in tables)
        return _compact_schema(db, [name for name, _ in tables])
    finally:
        db.close()


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


def _pragma(db: sqlite3.Connection, pragma: str, table: str) -> list[tuple]:
    return db.execute(f"PRAGMA {pragma}({_quoted(table)})").fetchall()


def _name(name: str) -> str:
    """A lowercased name, quoted when it is not a plain identifier (`"%_change_2007"`)."""
    name = name.lower()
    return name if _PLAIN_NAME.fullmatch(name) else _quoted(name)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_messages(task: Task, schema_style: str = "compact") -> list[dict[str, str]]:
    """The chat for one task: a single user message with the schema, question, hint and instruction."""
    lines = [render_schema(task.db_path, schema_style), "", f"Question: {task.question}"]
    if task.evidence:
        lines.append(f"Hint: {task.evidence}")
    lines.append(INSTRUCTION)
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
