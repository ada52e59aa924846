"""A grammar of SQLite's read-only queries whose names are one database's own tables and columns.

Decoding under it (`codelutra.generation.constrain`) keeps a model from inventing tables and columns, the most
common failure of small models on databases they never saw. The grammar is written in llguidance's Lark
dialect (https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md), whose lexer gives three things
SQL needs: terminals with exclusions (`& ~`: an alias is any name but a keyword or a table), per-table name
terminals, so that the parser knows which table a qualifier named, and lexemes decided by what the parser allows
(a word may be a column, an alias or a table at the same point). Case is free the way SQLite's is, in ASCII only
(`_ascii_case_free`: Lark's `"select"i` folds Unicode too, and would let `ſelect` through).

What a context-free grammar can and cannot say about names, and what this one says:
- `table.column` names a column of that very table: one terminal per table, then that table's columns.
- An unqualified column, and a column qualified by an alias (`T1.name`), may be any column of the database.
  Which table `T1` is, is declared in FROM, after the select list has used it: relating the two is a crossing
  dependency that a CFG can express only by spelling out one copy of the query grammar per binding of aliases to
  tables (exponential in the tables a query joins), and a decoding mask allows the union of every parse still
  alive, so any looser fallback beside those copies would undo the restriction. Not done here.
- The alias before a dot (`T1.`) has at most 3 characters (T1, t2, a: the habit of Spider's golds and of the
  models trained on them). A free name of any length there was where constrained decoding got lost: a model
  that began an invented column (`city_name`) could only go on as a would-be alias, since nothing but `.` may
  follow one, and it wrote identifier characters until its token budget ran out.
- Aliases where they are declared, and names in double quotes (SQLite reads `"x"` as a string where no column is called x, and Spider's
  gold queries write strings so), are free; backquoted and bracketed names must be the database's.

Whitespace is free where the model's habits vary (up to 16 spaces, tabs and newlines at a time, so that a model
cannot spend its token budget on blanks; none needed around punctuation)
and required between two words, as SQLite requires; a word before "(" needs none where the habit is to write
none (`count(`, `IN(`, `distinct(col)`: the lexer cannot look ahead, so `distinct(` is one terminal).
The answer prefix has opened the ```sql block: the grammar
covers the query, an optional `;`, then the closing fence, after which only end-of-turn is allowed.
Left out: WITH (its names would have to be free tables), window functions, VALUES, blobs, comments.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from codelutra.errors import UserError
from codelutra.execution.engines import engine_of
from codelutra.tasks import Task
from codelutra.tasks.catalog import sqlite_tables

# Words the grammar uses as keywords: an alias may not be one, and a table or column named so must be quoted.
KEYWORDS = (
    "select distinct all from where group by having order asc desc limit offset union intersect except join inner "
    "left right full outer cross natural on using as and or not in is null like glob between exists case when then "
    "else end cast collate escape nulls first last"
).split()
# SQLite's core, aggregate, date and math functions that the model may call.
FUNCTIONS = (
    "count sum avg min max total group_concat abs length lower upper substr substring round coalesce ifnull nullif "
    "instr replace trim ltrim rtrim date time datetime julianday strftime typeof cast iif random char unicode printf "
    "format hex quote like glob sign ceil ceiling floor sqrt pow power exp ln log log10 mod"
).split()
TYPES = "integer int real text numeric float double varchar char date datetime decimal bigint boolean blob".split()

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The query language; {tables}, {columns} and {qualified} are the database's names (`schema_grammar`).
_QUERY = r"""
start: _o select_stmt (_o ";")? _s "```"

select_stmt: select_core (_s compound_op _s select_core)* (_s ORDER _s BY _s ordering (_o "," _o ordering)*)? limit?
compound_op: UNION (_s ALL)? | INTERSECT | EXCEPT
limit: _s LIMIT _s expr ((_s OFFSET _s | _o "," _o) expr)?
select_core: SELECT (_s (DISTINCT | ALL))? _s result_column (_o "," _o result_column)* from? where? group_by?
           | SELECT _s DISTINCT_OPEN _o expr _o ")" (_s (AS _s)? ALIAS)? (_o "," _o result_column)* from? where? group_by?
from: _s FROM _s from_item (join_op from_item join_constraint?)*
where: _s WHERE _s expr
group_by: _s GROUP _s BY _s expr (_o "," _o expr)* (_s HAVING _s expr)?
result_column: "*" | (qualifier | table) ".*" | expr (_s (AS _s)? (ALIAS | SQ_STRING | DQ_STRING))?
ordering: expr (_s COLLATE _s ALIAS)? (_s (ASC | DESC))? (_s NULLS _s (FIRST | LAST))?

from_item: (table | "(" _o select_stmt _o ")") (_s (AS _s)? ALIAS)?
join_op: _o "," _o | _s (NATURAL _s)? ((LEFT | RIGHT | FULL) (_s OUTER)? _s | INNER _s | CROSS _s)? JOIN _s
join_constraint: _s ON _s expr | _s USING _o "(" _o column_name (_o "," _o column_name)* _o ")"

expr: unary (binary unary | like)*
binary: _o OPERATOR _o | _s (AND | OR | IS (_s NOT)?) _s | _s (NOT _s)? BETWEEN _s unary _s AND _s
like: _s (NOT _s)? (LIKE | GLOB) _s unary (_s ESCAPE _s SQ_STRING)?
unary: ((NOT _s) | ("-" | "+" | "~") _o)* primary postfix*
postfix: _s (NOT _s)? IN _o "(" _o (select_stmt | expr (_o "," _o expr)*)? _o ")"
       | _s COLLATE _s ALIAS | _s NOT _s NULL
primary: literal | column | function | "(" _o expr (_o "," _o expr)* _o ")" | "(" _o select_stmt _o ")"
       | (NOT _s)? EXISTS _o "(" _o select_stmt _o ")"
       | CASE (_s expr)? (_s WHEN _s expr _s THEN _s expr)+ (_s ELSE _s expr)? _s END
       | CAST _o "(" _o expr _s AS _s TYPE _o ")"
function: FUNCTION _o "(" _o ((DISTINCT _s)? expr (_o "," _o expr)* | "*")? _o ")"
literal: NUMBER | SQ_STRING | DQ_STRING | NULL
column: column_name | qualifier "." column_name | table_column
table_column: {qualified}
qualifier: QUALIFIER
table: {tables}
column_name: ANY_COLUMN

_s: WS
_o: WS?
WS: /[ \t\r\n]{{1,16}}/
NUMBER: /[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?/ | /\.[0-9]+([eE][-+]?[0-9]+)?/
SQ_STRING: /'([^'`]|'')*'/
DQ_STRING: /"([^"`]|"")*"/
OPERATOR: "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "+" | "-" | "*" | "/" | "%" | "||" | "&" | "|" | "<<" | ">>"
ALIAS: /[A-Za-z_][A-Za-z0-9_]*/ & ~/{reserved}/
QUALIFIER: /[A-Za-z_][A-Za-z0-9_]{{0,2}}/ & ~/{reserved}/
FUNCTION: {functions}
TYPE: ({types}) (/[ ]*\([ ]*[0-9]+[ ]*(,[ ]*[0-9]+[ ]*)?\)/)?
ANY_COLUMN: {columns}
DISTINCT_OPEN: /{distinct}\(/
"""


@functools.cache
def schema_grammar(db_path: str) -> str:
    """The grammar (llguidance Lark) of a read-only query on the database at `db_path`; cached per database."""
    tables = [t for t in sqlite_tables(db_path) if t.columns]
    if not tables:
        raise ValueError(f"{db_path}: no tables to write a query over")
    all_columns = sorted({name.lower(): name for t in tables for name, _ in t.columns}.values(), key=str.lower)
    table_rules, qualified, table_terminals = [], [], []
    for i, table in enumerate(tables):
        table_terminals.append(f"TABLE_{i}: {_names([table.name])}")
        table_terminals.append(f"COLUMNS_{i}: {_names([c for c, _ in table.columns])}")
        table_rules.append(f"TABLE_{i}")
        qualified.append(f'TABLE_{i} "." COLUMNS_{i}')
    reserved = KEYWORDS + [t.name for t in tables if _PLAIN_NAME.fullmatch(t.name)]
    grammar = _QUERY.format(
        tables=" | ".join(table_rules),
        qualified="\n      | ".join(qualified),
        columns=_names(all_columns),
        reserved="|".join(_ascii_case_free(word) for word in reserved),
        distinct=_ascii_case_free("distinct"),
        functions=_alternatives(FUNCTIONS),
        types=_alternatives(TYPES),
    )
    keywords = [f"{k.upper()}: /{_ascii_case_free(k)}/" for k in KEYWORDS]
    return grammar + "\n".join(table_terminals + keywords) + "\n"


def _names(names: list[str]) -> str:
    """A terminal's alternatives for the names: plain where SQLite takes them bare, and in each quoting SQLite reads."""
    alternatives = []
    for name in names:
        if _PLAIN_NAME.fullmatch(name) and name.lower() not in KEYWORDS:
            alternatives.append(name)
        alternatives += ['"' + name.replace('"', '""') + '"', f"`{name}`", f"[{name}]"]
    return _alternatives(alternatives)


def _alternatives(texts: list[str]) -> str:
    """One regex terminal matching any of the texts, case-free."""
    return "/(" + "|".join(_ascii_case_free(text) for text in texts) + ")/"


def _ascii_case_free(text: str) -> str:
    """A regex matching `text` with its ASCII letters in either case: `[sS][eE]...`, other characters as hex escapes
    (safe inside Lark's /.../ and the regex dialect alike)."""
    def char(c: str) -> str:
        if c.isascii() and c.isalpha():
            return f"[{c.lower()}{c.upper()}]"
        if c.isascii() and (c.isdigit() or c == "_"):
            return c
        return f"\\x{{{ord(c):x}}}"

    return "".join(char(c) for c in text)


def prompt_grammars(tasks: Sequence[Task], constrain: str) -> list[str | None] | None:
    """Per task, the grammar its answer is decoded under: None for every task when `constrain` is none,
    and for Python tasks, which are not constrained; SQL on a database other than SQLite is refused."""
    if constrain == "none":
        return None
    grammars = []
    for task in tasks:
        if task.kind != "sql":
            grammars.append(None)
            continue
        if engine_of(task.db_path) != "sqlite":
            raise UserError(f"generation.constrain=schema: the grammar is SQLite's, and {task.db_path} is not a SQLite database")
        grammars.append(schema_grammar(task.db_path))
    return grammars
