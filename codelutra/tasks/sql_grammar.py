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
  alive, so any looser fallback beside those copies would undo the restriction. Not done for joins; for queries
  that read one table, `scope=True` spells out one copy per table (linear), see `_SCOPED_STATEMENT`.
- The alias before a dot (`T1.`) has at most 3 characters (T1, t2, a: the habit of Spider's golds and of the
  models trained on them). A free name of any length there was where constrained decoding got lost: a model
  that began an invented column (`city_name`) could only go on as a would-be alias, since nothing but `.` may
  follow one, and it wrote identifier characters until its token budget ran out.
- Aliases where they are declared, and names in double quotes (SQLite reads `"x"` as a string where no column is called x, and Spider's
  gold queries write strings so), are free; backquoted and bracketed names must be the database's.

DuckDB and PostgreSQL get the same grammar with their differences (`DIALECTS`): names are quoted with double
quotes only, a double-quoted text is a name and never a string, `expr::type` casts, ILIKE, no `LIMIT a, b`, their
own function names; in PostgreSQL a name that is not all lower case must be quoted, in its exact case, since an
unquoted name is folded to lower case. Their tables and columns are read from the server or file
(`catalog.read_tables`), as the prompt shows them.

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
from dataclasses import dataclass

from codelutra.execution.engines import engine_of
from codelutra.tasks import Task
from codelutra.tasks.catalog import read_tables, sqlite_tables

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


@dataclass(frozen=True)
class Dialect:
    """What one engine's read-only queries differ in, as far as this grammar goes."""

    quotes: tuple[tuple[str, str], ...]  # how a name may be quoted: (open, close) pairs
    quoted_case: str  # "free": a quoted name matches in any case (SQLite, DuckDB); "exact": as written (PostgreSQL)
    bare_case: str  # "free": an unquoted name matches in any case; "lower": only a lower-case name may go unquoted
    double_quoted_strings: bool  # SQLite reads "x" as a string where no column is called x
    casts: bool  # expr::type
    limit_comma: bool  # LIMIT offset, count
    ilike: bool
    glob: bool
    double_equals: bool  # ==
    functions: tuple[str, ...]


_SQLITE_FUNCTIONS = tuple(FUNCTIONS)
_DUCKDB_FUNCTIONS = tuple((
    "count sum avg min max abs length lower upper substr substring round coalesce ifnull nullif instr replace trim "
    "ltrim rtrim string_agg group_concat concat strftime strptime date_part date_trunc datediff year month day "
    "hour minute second now current_date typeof ceil ceiling floor sqrt pow power exp ln log log10 mod sign "
    "greatest least random median mode count_if bool_and bool_or regexp_matches starts_with contains"
).split())
_POSTGRES_FUNCTIONS = tuple((
    "count sum avg min max abs length char_length lower upper substr substring round coalesce nullif replace trim "
    "ltrim rtrim string_agg concat position strpos date_part date_trunc age now to_char to_date ceil ceiling floor "
    "sqrt power exp ln log mod sign greatest least random bool_and bool_or every"
).split())
_DOUBLE_QUOTES = (('"', '"'),)
DIALECTS = {
    "sqlite": Dialect(
        quotes=(('"', '"'), ("`", "`"), ("[", "]")), quoted_case="free", bare_case="free", double_quoted_strings=True,
        casts=False, limit_comma=True, ilike=False, glob=True, double_equals=True, functions=_SQLITE_FUNCTIONS,
    ),
    "duckdb": Dialect(
        quotes=_DOUBLE_QUOTES, quoted_case="free", bare_case="free", double_quoted_strings=False,
        casts=True, limit_comma=False, ilike=True, glob=True, double_equals=True, functions=_DUCKDB_FUNCTIONS,
    ),
    "postgres": Dialect(
        quotes=_DOUBLE_QUOTES, quoted_case="exact", bare_case="lower", double_quoted_strings=False,
        casts=True, limit_comma=False, ilike=True, glob=False, double_equals=False, functions=_POSTGRES_FUNCTIONS,
    ),
}  # fmt: skip

# The query language; {tables}, {columns} and {qualified} are the database's names (`schema_grammar`).
_QUERY = r"""
start: _o select_stmt (_o ";")? _s "```"

{statement}
compound_op: UNION (_s ALL)? | INTERSECT | EXCEPT
limit: _s LIMIT _s expr ((_s OFFSET _s{limit_comma}) expr)?
{cores}
where: _s WHERE _s expr
group_by: _s GROUP _s BY _s expr (_o "," _o expr)* (_s HAVING _s expr)?
result_column: "*" | (qualifier | table) ".*" | expr (_s (AS _s)? ({column_aliases}))?
ordering: expr (_s COLLATE _s ALIAS)? (_s (ASC | DESC))? (_s NULLS _s (FIRST | LAST))?

from_item: (table | "(" _o select_stmt _o ")") (_s (AS _s)? ALIAS)?
join_op: _o "," _o | _s (NATURAL _s)? ((LEFT | RIGHT | FULL) (_s OUTER)? _s | INNER _s | CROSS _s)? JOIN _s
join_constraint: _s ON _s expr | _s USING _o "(" _o column_name (_o "," _o column_name)* _o ")"

expr: unary (binary unary | like)*
binary: _o OPERATOR _o | _s (AND | OR | IS (_s NOT)?) _s | _s (NOT _s)? BETWEEN _s unary _s AND _s
like: _s (NOT _s)? ({likes}) _s unary (_s ESCAPE _s SQ_STRING)?
unary: ((NOT _s) | ("-" | "+" | "~") _o)* primary postfix*
postfix: _s (NOT _s)? IN _o "(" _o (select_stmt | expr (_o "," _o expr)*)? _o ")"
       | _s COLLATE _s ALIAS | _s NOT _s NULL{casts}
primary: literal | column | function | "(" _o expr (_o "," _o expr)* _o ")" | "(" _o select_stmt _o ")"
       | (NOT _s)? EXISTS _o "(" _o select_stmt _o ")"
       | CASE (_s expr)? (_s WHEN _s expr _s THEN _s expr)+ (_s ELSE _s expr)? _s END
       | CAST _o "(" _o expr _s AS _s TYPE _o ")"
function: FUNCTION _o "(" _o ((DISTINCT _s)? expr (_o "," _o expr)* | "*")? _o ")"
literal: {literals}
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
OPERATOR: "="{double_equals} | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "+" | "-" | "*" | "/" | "%" | "||" | "&" | "|" | "<<" | ">>"
ALIAS: /[A-Za-z_][A-Za-z0-9_]*/ & ~/{reserved}/
QUALIFIER: /[A-Za-z_][A-Za-z0-9_]{{0,2}}/ & ~/{reserved}/
FUNCTION: {functions}
TYPE: ({types}) (/[ ]*\([ ]*[0-9]+[ ]*(,[ ]*[0-9]+[ ]*)?\)/)?
ANY_COLUMN: {columns}
DISTINCT_OPEN: /{distinct}\(/
"""


# The statement and cores of `constrain: schema`: any column of the database wherever a column goes.
_STATEMENT = r"""select_stmt: select_core (_s compound_op _s select_core)* (_s ORDER _s BY _s ordering (_o "," _o ordering)*)? limit?"""
_CORES = r"""select_core: SELECT (_s (DISTINCT | ALL))? _s result_column (_o "," _o result_column)* from? where? group_by?
           | SELECT _s DISTINCT_OPEN _o expr _o ")" (_s (AS _s)? ALIAS)? (_o "," _o result_column)* from? where? group_by?
from: _s FROM _s from_item (join_op from_item join_constraint?)*"""

# The statement and cores of `constrain: scope`: a query that reads one table names only that table's columns (one
# copy of the query per table, `_ONE_TABLE`); a query that joins, or reads a subquery, names any column as `schema`
# does. A mask allows what any live copy allows, so while the select list is written any column may come; once FROM
# names a table, the copies of the other tables die, and a select list that named another table's column can only
# go on by a JOIN. The select list of a one-table query holds plain items (a column, arithmetic on columns, a
# function of one, `*`): with whole expressions there, every table's copy of the expression rules was alive at
# once and llguidance's parser gave up (over 50,000 Earley items a mask step); so, a mask step costs about twice
# `schema`'s, and the grammar still takes 6,901 of Spider's 6,904 training golds.
_SCOPED_STATEMENT = r"""select_stmt: select_core (_s compound_op _s select_core)+ (_s ORDER _s BY _s ordering (_o "," _o ordering)*)? limit?
           | joined_core (_s ORDER _s BY _s ordering (_o "," _o ordering)*)? limit?
           | {one_table_statements}"""
_SCOPED_CORES = r"""select_core: joined_core | {one_table_cores}
joined_core: SELECT (_s (DISTINCT | ALL))? _s result_column (_o "," _o result_column)* from where? group_by?
           | SELECT _s DISTINCT_OPEN _o expr _o ")" (_s (AS _s)? ALIAS)? (_o "," _o result_column)* from where? group_by?
from: _s FROM _s from_item (join_op from_item join_constraint?)+ | _s FROM _s "(" _o select_stmt _o ")" (_s (AS _s)? ALIAS)?"""

# One table's copy of a statement and its expressions (`@`: the table's number); subqueries are whole statements.
_ONE_TABLE = r"""
one_stmt_@: one_core_@ (_s ORDER _s BY _s ordering_@ (_o "," _o ordering_@)*)? limit?
one_core_@: (SELECT (_s (DISTINCT | ALL))? _s item_@ | SELECT _s DISTINCT_OPEN _o term_@ _o ")") (_o "," _o item_@)* _s FROM _s TABLE_@ (_s (AS _s)? ALIAS)? (_s WHERE _s expr_@)? (_s GROUP _s BY _s expr_@ (_o "," _o expr_@)* (_s HAVING _s expr_@)?)?
item_@: "*" | (qualifier | TABLE_@) ".*" | (term_@ | FUNCTION _o "(" _o ((DISTINCT _s)? term_@ | "*") _o ")") (_s (AS _s)? ALIAS)?
term_@: column_@ (_o OPERATOR _o (column_@ | NUMBER))*
ordering_@: expr_@ (_s COLLATE _s ALIAS)? (_s (ASC | DESC))? (_s NULLS _s (FIRST | LAST))?
expr_@: unary_@ (binary_@ unary_@ | like_@)*
binary_@: _o OPERATOR _o | _s (AND | OR | IS (_s NOT)?) _s | _s (NOT _s)? BETWEEN _s unary_@ _s AND _s
like_@: _s (NOT _s)? ({likes}) _s unary_@ (_s ESCAPE _s SQ_STRING)?
unary_@: ((NOT _s) | ("-" | "+" | "~") _o)* primary_@ postfix_@*
postfix_@: _s (NOT _s)? IN _o "(" _o (select_stmt | expr_@ (_o "," _o expr_@)*)? _o ")"
       | _s COLLATE _s ALIAS | _s NOT _s NULL{casts}
primary_@: literal | column_@ | function_@ | "(" _o expr_@ (_o "," _o expr_@)* _o ")" | "(" _o select_stmt _o ")"
       | (NOT _s)? EXISTS _o "(" _o select_stmt _o ")"
       | CASE (_s expr_@)? (_s WHEN _s expr_@ _s THEN _s expr_@)+ (_s ELSE _s expr_@)? _s END
       | CAST _o "(" _o expr_@ _s AS _s TYPE _o ")"
function_@: FUNCTION _o "(" _o ((DISTINCT _s)? expr_@ (_o "," _o expr_@)* | "*")? _o ")"
column_@: COLUMNS_@ | (qualifier | TABLE_@) "." COLUMNS_@
"""


@functools.cache
def schema_grammar(address: str, scope: bool = False) -> str:
    """The grammar (llguidance Lark) of a read-only query on the database at `address`, in its engine's dialect;
    cached per database. `scope`: a query over one table names only its columns (`_SCOPED_STATEMENTS`)."""
    engine = engine_of(address)
    dialect = DIALECTS[engine]
    tables = [t for t in (sqlite_tables(address) if engine == "sqlite" else read_tables(address)) if t.columns]
    if not tables:
        raise ValueError(f"{address}: no tables to write a query over")
    all_columns = sorted({name.lower(): name for t in tables for name, _ in t.columns}.values(), key=str.lower)
    table_rules, qualified, table_terminals = [], [], []
    for i, table in enumerate(tables):
        table_terminals.append(f"TABLE_{i}: {_names([table.name], dialect)}")
        table_terminals.append(f"COLUMNS_{i}: {_names([c for c, _ in table.columns], dialect)}")
        table_rules.append(f"TABLE_{i}")
        qualified.append(f'TABLE_{i} "." COLUMNS_{i}')
    keywords = KEYWORDS + (["ilike"] if dialect.ilike else [])
    reserved = keywords + [t.name for t in tables if _PLAIN_NAME.fullmatch(t.name)]
    pieces = dict(
        column_aliases="ALIAS | SQ_STRING | DQ_STRING" if dialect.double_quoted_strings else "ALIAS | DQ_STRING",
        likes=" | ".join(["LIKE"] + (["ILIKE"] if dialect.ilike else []) + (["GLOB"] if dialect.glob else [])),
        casts=' | _o "::" _o TYPE' if dialect.casts else "",
    )
    if scope:
        numbers = [str(i) for i in range(len(tables))]
        statement = _SCOPED_STATEMENT.format(one_table_statements=" | ".join(f"one_stmt_{i}" for i in numbers))
        cores = _SCOPED_CORES.format(one_table_cores=" | ".join(f"one_core_{i}" for i in numbers))
        one_table = _ONE_TABLE.format(**pieces)
        cores += "".join(one_table.replace("@", i) for i in numbers)
    else:
        statement, cores = _STATEMENT, _CORES
    grammar = _QUERY.format(
        statement=statement,
        cores=cores,
        tables=" | ".join(table_rules),
        qualified="\n      | ".join(qualified),
        columns=_names(all_columns, dialect),
        reserved="|".join(_ascii_case_free(word) for word in reserved),
        distinct=_ascii_case_free("distinct"),
        functions=_alternatives(list(dialect.functions)),
        types=_alternatives(TYPES),
        limit_comma=' | _o "," _o' if dialect.limit_comma else "",
        **pieces,
        literals="NUMBER | SQ_STRING | DQ_STRING | NULL" if dialect.double_quoted_strings else "NUMBER | SQ_STRING | NULL",
        double_equals=' | "=="' if dialect.double_equals else "",
    )
    keyword_terminals = [f"{k.upper()}: /{_ascii_case_free(k)}/" for k in keywords]
    return grammar + "\n".join(table_terminals + keyword_terminals) + "\n"


def _names(names: list[str], dialect: Dialect) -> str:
    """A terminal's alternatives for the names: bare where the engine takes them so, and in each quoting it reads."""
    quoted_regex = _ascii_case_free if dialect.quoted_case == "free" else _exact
    alternatives = []
    for name in names:
        if _PLAIN_NAME.fullmatch(name) and name.lower() not in KEYWORDS and (dialect.bare_case == "free" or name == name.lower()):
            alternatives.append(_ascii_case_free(name))
        for open_, close in dialect.quotes:
            inner = name.replace(close, close * 2) if open_ == close else name
            alternatives.append(quoted_regex(open_ + inner + close))
    return "/(" + "|".join(alternatives) + ")/"


def _alternatives(texts: list[str]) -> str:
    """One regex terminal matching any of the texts, case-free."""
    return "/(" + "|".join(_ascii_case_free(text) for text in texts) + ")/"


def _exact(text: str) -> str:
    """A regex matching `text` exactly: letters, digits and _ as themselves, other characters as hex escapes."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else f"\\x{{{ord(c):x}}}" for c in text)


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
    """Per task, the grammar its answer is decoded under (`constrain`: none, schema or scope): None for every task
    when `constrain` is none, and for Python tasks, which are not constrained."""
    if constrain == "none":
        return None
    grammars = []
    for task in tasks:
        if task.kind != "sql":
            grammars.append(None)
            continue
        grammars.append(schema_grammar(task.db_path, scope=constrain == "scope"))
    return grammars
