"""SQL extraction from what small models really write: fences, prose, several statements, cut-off text."""

import pytest

from codelutra.generation.extract import extract_sql

CASES = [
    ("fenced", "```sql\nSELECT name FROM singer;\n```", "SELECT name FROM singer"),
    (
        "prose around a fence",
        "Here is the query:\n\n```sql\nSELECT count(*) FROM head WHERE age > 56\n```\n\nThis counts the heads older than 56.",
        "SELECT count(*) FROM head WHERE age > 56",
    ),
    ("upper-case fence language", "```SQL\nSELECT 1\n```", "SELECT 1"),
    ("sqlite fence language", "```sqlite\nSELECT 2;\n```", "SELECT 2"),
    ("unterminated fence (generation cut off)", "```sql\nSELECT name FROM singer WHERE age >", "SELECT name FROM singer WHERE age >"),
    ("two statements in a fence", "```sql\nSELECT a FROM t;\nSELECT b FROM t;\n```", "SELECT a FROM t"),
    ("semicolon inside a string", "```sql\nSELECT * FROM t WHERE name = 'a;b'; DROP TABLE t\n```", "SELECT * FROM t WHERE name = 'a;b'"),
    ("doubled quote inside a string", "```sql\nSELECT * FROM t WHERE name = 'it''s; fine';\n```", "SELECT * FROM t WHERE name = 'it''s; fine'"),
    ("semicolon inside a quoted name", '```sql\nSELECT "a;b" FROM t; SELECT 2\n```', 'SELECT "a;b" FROM t'),
    ("second fence is the sql one", "```python\nprint(1)\n```\n```sql\nSELECT 3\n```", "SELECT 3"),
    ("fence without language", "```\nSELECT id FROM t ORDER BY id\n```", "SELECT id FROM t ORDER BY id"),
    ("label inside a plain fence", "```\nSQL: SELECT id FROM t\n```", "SELECT id FROM t"),
    ("unfenced, lower case", "select name from singer where age > 30", "select name from singer where age > 30"),
    ("unfenced after a label", "SQL: SELECT name FROM singer; -- the names", "SELECT name FROM singer"),
    (
        "unfenced, prose before and after",
        "To answer this we need the singer table.\nSELECT name\nFROM singer\nWHERE age > 30\n\nThis returns the names.",
        "SELECT name\nFROM singer\nWHERE age > 30",
    ),
    (
        "with ... select",
        "```sql\nWITH old AS (SELECT * FROM singer WHERE age > 40)\nSELECT count(*) FROM old;\n```",
        "WITH old AS (SELECT * FROM singer WHERE age > 40)\nSELECT count(*) FROM old",
    ),
    ("unfenced with ... select", "WITH x AS (SELECT 1 AS v) SELECT v FROM x;", "WITH x AS (SELECT 1 AS v) SELECT v FROM x"),
    ("trailing fence on the same line", "SELECT a FROM t```", "SELECT a FROM t"),
    ("write inside a sql fence is returned for the verifier", "```sql\nDELETE FROM singer;\n```", "DELETE FROM singer"),
    ("create table in a fence is returned too", "```sql\nCREATE TABLE t (a INT);\n```", "CREATE TABLE t (a INT)"),
]


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in CASES], ids=[name for name, _, _ in CASES])
def test_extracts_the_first_query(text, expected):
    assert extract_sql(text) == expected


NO_QUERY = [
    ("empty", ""),
    ("prose only", "I am not sure which table holds the singers."),
    ("select mid-sentence", "You can select the names from the singer table and sort them by age."),
    ("sentence starting with Select", "Select the singers older than 30 and list their names."),
    ("sentence starting with With", "With this schema, the answer is in the singer table."),
    ("create table outside a sql fence", "CREATE TABLE singer (id INT, name TEXT);"),
    ("plain fence with non-query code", "```\nCREATE TABLE t (a INT)\n```"),
    ("empty sql fence, cut off", "```sql\n"),
    ("sql fence holding only a comment", "```sql\n-- I cannot answer this\n```"),
]


@pytest.mark.parametrize("text", [t for _, t in NO_QUERY], ids=[name for name, _ in NO_QUERY])
def test_no_query_gives_none(text):
    assert extract_sql(text) is None
