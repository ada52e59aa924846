"""Canonical forms of programs, so that each distinct program is run once per batch.

Small models repeat themselves: the same query with other spacing or keyword case, the same function
with other blank lines or comments. The sandboxes key their work by these forms and share one verdict
among every candidate with the same key (the program actually run is the first one's own text, never
the canonical form). A form is only ever coarser than the text where it is sure to mean the same:

* SQL: sqlglot's rendering of its parse tree (SQLite dialect): keyword case, whitespace, redundant
  parentheses and trailing semicolons go. A query sqlglot cannot parse fully (it warns and keeps a raw
  "Command") keeps its own text, trimmed.
* Python: the `ast.dump` of the module (comments, blank lines, formatting and quote style go;
  docstrings and every name stay). Code that does not parse keeps its own text.
"""

from __future__ import annotations

import ast
import functools
import logging
import re


def trim_sql(sql: str) -> str:
    """Drop surrounding whitespace and trailing semicolons (models often end with ';')."""
    return re.sub(r"[\s;]+$", "", sql.strip())


@functools.lru_cache(maxsize=65536)
def sql_key(sql: str) -> str:
    """The canonical text of a query (statements joined by '; '); its trimmed text where sqlglot is unsure."""
    import sqlglot  # here: the sandbox's worker processes import this module and never need sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, SqlglotError

    text = trim_sql(sql)
    parser_logger = logging.getLogger("sqlglot")
    level = parser_logger.level
    parser_logger.setLevel(logging.ERROR)  # sqlglot warns about every unsupported statement
    try:
        trees = sqlglot.parse(text, read="sqlite", error_level=ErrorLevel.RAISE)
        if not trees or any(tree is None or isinstance(tree, exp.Command) for tree in trees):
            return text
        return "; ".join(tree.sql(dialect="sqlite") for tree in trees)
    except (SqlglotError, RecursionError, ValueError, KeyError, TypeError, AttributeError):
        return text  # sqlglot fails in its own ways on odd input; the text itself is still a valid key
    finally:
        parser_logger.setLevel(level)


def python_key(code: str) -> str:
    """The module's syntax tree, dumped; the stripped code where it does not parse."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code.strip()
