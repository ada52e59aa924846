"""Canonical forms of programs, so that each distinct program is run once per batch.

Small models repeat themselves: the same query with other spacing or keyword case, the same function
with other blank lines or comments. The sandboxes key their work by these forms and share one verdict
among every candidate with the same key (the program actually run is the first one's own text, never
the canonical form). A form is only ever coarser than the text where it is sure to mean the same:

* SQL: the query's tokens as SQLite reads them: comments and the spacing between tokens go, and
  outside quotes ASCII letters are lowered (SQLite's keywords and identifiers ignore ASCII case);
  string literals and quoted identifiers keep their text. Text that does not lex (an unclosed quote)
  keeps its own text, trimmed. Not sqlglot's rendering of a parse tree: parsing costs about 1 ms a
  query, more than running one on a small database, and on the project's real samples it found no
  duplicate that this cheaper form misses (`benchmarks/speed.py` measures the whole batch).
* Python: the `ast.dump` of the module (comments, blank lines, formatting and quote style go;
  docstrings and every name stay). Code that does not parse keeps its own text.
"""

from __future__ import annotations

import ast
import functools
import re


def trim_sql(sql: str) -> str:
    """Drop surrounding whitespace and trailing semicolons (models often end with ';')."""
    return re.sub(r"[\s;]+$", "", sql.strip())


# One SQLite token or gap at a time: a comment, a quoted text (string, "identifier", `identifier`,
# [identifier]; a doubled quote stays inside), spacing, or a run of anything else.
_SQL_LEXEME = re.compile(
    r"(?P<comment>--[^\n]*|/\*.*?\*/)"
    r"|(?P<quoted>'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`(?:[^`]|``)*`|\[[^\]]*\])"
    r"|(?P<space>\s+)"
    r"|(?P<other>[^'\"`\[\s/-]+|[/-])",
    re.DOTALL,
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def sql_lexemes(sql: str) -> list[tuple[str, str]] | None:
    """(kind, text) for each piece of `sql`: "comment", "quoted", "space" or "other"; None if it does
    not lex (an unclosed quote or bracket)."""
    pieces, position = [], 0
    for lexeme in _SQL_LEXEME.finditer(sql):
        if lexeme.start() != position:
            return None
        position = lexeme.end()
        pieces.append((lexeme.lastgroup, lexeme.group()))
    return pieces if position == len(sql) else None


@functools.lru_cache(maxsize=65536)
def sql_key(sql: str) -> str:
    """The query's tokens, lowered outside quotes, one space between; its trimmed text where it does not lex."""
    text = trim_sql(sql)
    lexemes = sql_lexemes(text)
    if lexemes is None:  # no form is sure to mean the same
        return text
    parts = []
    for kind, piece in lexemes:
        if kind == "quoted":
            parts.append(piece)
        elif kind == "other":
            parts.append(piece.translate(_ASCII_LOWER))
        elif parts and parts[-1] != " ":  # a comment separates tokens as spacing does
            parts.append(" ")
    return "".join(parts).strip()


def python_key(code: str) -> str:
    """The module's syntax tree, dumped; the stripped code where it does not parse."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code.strip()
