"""Find the code in what a model wrote: the SQL query (`extract_sql`) or the Python code (`extract_python`).

Small models wrap their code in code fences, prose, several statements, or stop mid-answer.
The rules for SQL, tried in order:

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

The rules for Python, tried in order:

1. The first ```python (or ```py, ```python3) fenced block that holds code, even one the
   generation cut off before its closing fence. It is returned as written, so that a syntax
   error is judged rather than hidden.
2. Otherwise the first fenced block without a language that holds code (blocks in another
   language, such as ```text or ```bash, are passed over).
3. Otherwise code in the text itself: from the first line that starts a definition, an import or
   an assignment, the longest run of lines that parses as Python, so prose after it is left out.
   Prose alone ("The answer is 5.") is never taken for code: what is taken must hold a statement
   other than a bare expression.

Leading indentation is kept (DS-1000 inserts some solutions as a function body); of a block, the
text after a DS-1000 `</code>` or `END SOLUTION` marker is dropped, as are blank lines around it.
"""

from __future__ import annotations

import ast
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


_FENCE = re.compile(r"```[ \t]*([^\s`]*)[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)  # (language, body), in pairs
_PYTHON_LANGUAGES = ("python", "python3", "py")
_END_OF_SOLUTION = re.compile(r"</code>|^[ \t#]*END SOLUTION\b", re.MULTILINE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")
_CODE_LINE = re.compile(r"^(?:def |class |import |from \w|@\w|\w+(?:\s*,\s*\w+)*\s*=[^=])", re.MULTILINE)


def extract_python(text: str) -> str | None:
    """The Python code in `text`, indentation kept; None when it holds none."""
    blocks = _FENCE.findall(text)
    for languages in (_PYTHON_LANGUAGES, ("",)):
        for language, block in blocks:
            code = _clean_block(block) if language.lower() in languages else ""
            if code:
                return code
    if "```" in text:
        text = text[: text.index("```")]  # a block in another language is not code to run
    for start in _CODE_LINE.finditer(text):
        code = _longest_parsing_prefix(text[start.start() :].splitlines())
        if code:
            return code
    return None


def _clean_block(block: str) -> str:
    block = _END_OF_SOLUTION.split(block, maxsplit=1)[0]
    return _LEADING_BLANK_LINES.sub("", block).rstrip()


def _longest_parsing_prefix(lines: list[str]) -> str | None:
    """The longest run of the first lines that parses and holds a statement other than a bare expression."""
    for end in range(len(lines), 0, -1):
        code = "\n".join(lines[:end]).rstrip()
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError):
            continue
        if any(not isinstance(statement, ast.Expr) for statement in tree.body):
            return code
    return None


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
