"""Find the SQL query in what a model wrote.

Small models wrap their query in code fences, prose, several statements, or stop mid-answer.
The rules, tried in order:

1. The first ```sql (or ```sqlite) fenced block, even one the generation cut off before its
   closing fence. Whatever statement it holds is returned, writes included, so that the
   verifier judges them instead of them being hidden.
2. Otherwise the first fenced block, of any or no language, that starts with SELECT or WITH.
3. Otherwise the first SELECT or WITH statement in the text itself, up to a `;`, a blank line
   or the end. So that prose is not taken for a query ("Select the singers older than 30."),
   such a statement must start a line or follow a colon ("SQL: select ..."), a SELECT must be
   written in upper or lower case, not as the first word of a sentence, and a WITH must read
   like a common table expression (`WITH name AS (`).

Of the chosen text only the first statement is kept (`;` inside a string literal, quoted name
or comment does not end it), without a leading "SQL:"-style label or the trailing `;`.
"""

from __future__ import annotations

import re

_SQL_FENCE = re.compile(r"```[ \t]*(?:sqlite3?|sql)\b(.*?)(?:```|\Z)", re.IGNORECASE | re.DOTALL)
_ANY_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")
_LABEL = re.compile(r"\A\s*(?:sql|sqlite|query|answer)\s*:", re.IGNORECASE)
_QUERY_START = re.compile(r"(?:select|with)\b", re.IGNORECASE)
_STATEMENT_IN_TEXT = re.compile(
    r"(?:^[ \t]*|:[ \t]*)"  # at the start of a line, or after a colon
    r"(?=(?-i:SELECT|select)\b|with\s+(?:recursive\s+)?\w+\s*(?:\([^()]*\)\s*)?as\s*\()",
    re.MULTILINE | re.IGNORECASE,
)


def extract_sql(text: str) -> str | None:
    """The first SQL query in `text`, without its trailing `;`; None when it holds none."""
    for block in _SQL_FENCE.findall(text):
        statement = _first_statement(_LABEL.sub("", block))
        if statement:
            return statement
    for block in _ANY_FENCE.findall(text):
        block = _LABEL.sub("", block).lstrip()
        if _QUERY_START.match(block):
            return _first_statement(block)
    start = _STATEMENT_IN_TEXT.search(text)
    if start:
        return _first_statement(text[start.end() :].split("```")[0], stop_at_blank_line=True)
    return None


def _first_statement(sql: str, *, stop_at_blank_line: bool = False) -> str | None:
    """The text up to the first `;` outside quotes and comments, trimmed; None if it holds no code."""
    i, has_code = 0, False
    while i < len(sql):
        char = sql[i]
        if char == ";" or (stop_at_blank_line and _BLANK_LINE.match(sql, i)):
            break
        if char in "'\"`[":
            closing = "]" if char == "[" else char
            end = sql.find(closing, i + 1)
            i = len(sql) if end < 0 else end + 1  # a doubled quote ('it''s') reopens at once: same result
            has_code = True
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + 2
            continue
        has_code = has_code or not char.isspace()
        i += 1
    statement = sql[:i].strip()
    return statement if has_code else None
