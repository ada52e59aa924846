"""Canonical forms: the same program in another form shares a key; a different program never does."""

import pytest

from codelutra.execution.canonical import python_key, sql_key


@pytest.mark.parametrize(
    "a, b",
    [
        ("SELECT name FROM singer WHERE age >= 27", "select  name\nfrom singer\nwhere age >= 27;"),
        ("SELECT count(*) FROM t", "SELECT COUNT(*) FROM t ;;"),
        ("SELECT a FROM t -- the names\nWHERE b = 1", "SELECT a FROM t /* the\nnames */ WHERE b = 1"),
        ("SELECT a FROM t LIMIT", "SELECT a FROM t LIMIT  ;"),  # not valid SQL, still the same tokens
        ("SELECT [Name] FROM T", "select [Name] from t"),  # quoted identifiers keep their text
    ],
)
def test_same_sql_same_key(a, b):
    assert sql_key(a) == sql_key(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("SELECT a FROM t WHERE b = 'X'", "SELECT a FROM t WHERE b = 'x'"),  # string literals keep their case
        ('SELECT "a" FROM t', "SELECT 'a' FROM t"),  # an identifier is not a string
        ("SELECT a FROM t", "SELECT a FROM T2"),
        ("SELECT 'a FROM t", "SELECT  'a FROM t"),  # an unclosed quote: only trimmed, spacing kept
        ("SELECT a - -1 FROM t", "SELECT a --1 FROM t"),  # spacing that separates tokens stays
        ("SELECT x'AB' FROM t", "SELECT x 'AB' FROM t"),  # a blob literal, not a column with an alias
        ("SELECT Ä FROM t", "SELECT ä FROM t"),  # SQLite ignores the case of ASCII letters only
        ("SELECT a FROM t WHERE b = 'it''s'", "SELECT a FROM t WHERE b = 'IT''S'"),
    ],
)
def test_different_sql_different_key(a, b):
    assert sql_key(a) != sql_key(b)


def test_python_key_ignores_formatting_and_comments_only():
    add = "def add(a, b):\n    return a + b\n"
    assert python_key(add) == python_key("def add(a,b):\n    # sum\n\n    return (a+b)")
    assert python_key(add) != python_key("def add(a, b):\n    return a - b\n")
    assert python_key("x = 'a'") != python_key("x = 'b'")
    assert python_key("def f(:\n  pass") == "def f(:\n  pass"  # does not parse: its own text
