"""When a candidate's result counts as the gold's: the scoring rules, one home (`verify.match`).

Three rules, because a number is only comparable with a leaderboard's when it is scored the same way:

* `execution` (the default): this project's own rule. Rows are compared as a multiset unless the
  outermost query orders them, column order is free, numbers compare by value and floats to 6
  significant digits (10621.67 == 10621.666...67 is True, both 10621.7; 10621.67 == 10621.61 is
  False; 0.1 + 0.2 == 0.3 is True). It agrees with the official Spider evaluator run with
  `--keep_distinct` except where floats differ in the last digits or ORDER BY sits in a subquery only.
* `spider`: the official test-suite evaluator's default (taoyds/test-suite-sql-eval, `evaluation.py`
  with `--keep_distinct` off, its default). `exec_eval.eval_exec_match` first rewrites both queries
  with `postprocess` ("> =" -> ">=", "< =", "! =") and `parse.remove_distinct` (drops every token
  that reads "distinct", COUNT(DISTINCT x) included), then takes the order to matter when
  `'order by' in g_str.lower()` (anywhere in the gold's text: a subquery, a string), and compares
  with `result_eq`: the same multiset of rows (a list when ordered) up to a permutation of columns,
  with Python's `==` on the values (exact floats; 1 == 1.0). The official code also requires the
  match on every `.sqlite` file in the database's folder: the test suite's extra databases where
  they are installed, the one database in the plain Spider release; `verify.variants` (perturbed
  copies, `variants.py`) plays that part here. One step of the official command line is not
  followed: `evaluation.py`'s `evaluate` rewrites `" value "` to `" 1 "` in every prediction (not
  the gold) before it parses and runs it, so that predictions with the placeholder `value` where a
  literal goes (from models that predict SQL without values) still parse and run. A candidate here
  is a complete query with its own values, so the rewrite would only turn a column or alias named
  value (`SELECT price AS value FROM ...`) into a wrong query; such candidates are scored as written.
* `bird`: BIRD's execution accuracy (bird-bench/mini_dev `evaluation/evaluation_ex.py`,
  `calculate_ex`): `set(predicted_res) == set(ground_truth_res)`. Row sets, so duplicates and row
  order never count, but column order does, and values compare exactly.

The query rewrites of a rule (`prepare`) apply to what is run, gold and candidate alike.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from codelutra.execution.canonical import sql_lexemes, trim_sql
from codelutra.execution.verdict import Verdict, one_line

MATCH_RULES = ("execution", "spider", "bird")

_SIGNIFICANT_DIGITS = 6  # floats agreeing to this many significant digits are equal (execution rule)
_MAX_COLUMN_PERMUTATIONS = 1_000  # column orders tried before giving up on a match
GOLD_FAILED = "gold query failed"  # how a verdict's detail starts when the gold, not the candidate, failed


class QueryOutcome(Protocol):
    """What judging reads of a query's run (`sql.QueryResult` has these fields)."""

    kind: str  # "ok" or an error kind
    rows: list[tuple] | None
    error: str
    seconds: float


# ---------------------------------------------------------------------------------------------
# The rules


@dataclass(frozen=True)
class MatchRule:
    name: str
    prepare: Callable[[str], str]  # the query as run (gold and candidate alike)
    is_ordered: Callable[[str], bool]  # from the gold as run: does row order count?
    same: Callable[[list[tuple], list[tuple], bool], bool]  # (gold rows, candidate rows, ordered)
    differ: Callable[[list[tuple], list[tuple], bool], str]  # one line: how they differ (when not `same`)


def rule(name: str) -> MatchRule:
    """The rule called `name` (one of MATCH_RULES)."""
    return _RULES[name]


def judge(gold: QueryOutcome, candidate: QueryOutcome | None, *, ordered: bool, match: str = "execution") -> Verdict:
    """The verdict on one candidate; `candidate` is None only when the gold failed (it was not run)."""
    if gold.kind != "ok":
        return Verdict("runtime_error", one_line(f"{GOLD_FAILED}: {gold.kind}: {gold.error}"), 0.0)
    if candidate.kind != "ok":
        return Verdict(candidate.kind, candidate.error, candidate.seconds)
    chosen = rule(match)
    if chosen.same(gold.rows, candidate.rows, ordered):
        return Verdict("correct", "", candidate.seconds)
    return Verdict("wrong_result", chosen.differ(gold.rows, candidate.rows, ordered), candidate.seconds)


# ---------------------------------------------------------------------------------------------
# execution: multiset unless the outermost query orders, floats to 6 significant digits


def results_match(gold_rows: list[tuple], candidate_rows: list[tuple], *, ordered: bool) -> bool:
    """The execution rule: equal rows (as a multiset unless `ordered`), up to column order.

    Numbers compare by value (1 == 1.0) and floats to 6 significant digits (see `_normalize`).
    """
    return _equal_up_to_columns(gold_rows, candidate_rows, ordered=ordered, normalize=_normalize)


def gold_is_ordered(gold_sql: str) -> bool:
    """True when the outermost SELECT (or UNION etc.) has ORDER BY: then row order is part of the answer.

    Read off the query's lexemes: with comments and quoted texts set aside and every parenthesised
    part (subqueries, CTEs, window clauses) collapsed, an ORDER BY is left only at the top level.
    """
    lexemes = sql_lexemes(trim_sql(gold_sql))
    if lexemes is None:  # an unclosed quote: read the text as it is
        text = gold_sql
    else:
        text = "".join(" _ " if kind in ("comment", "quoted") else piece for kind, piece in lexemes)
    text = text.strip()
    while text.startswith("(") and _closing_paren(text) == len(text) - 1:  # "(SELECT ... ORDER BY ...)"
        text = text[1:-1].strip()
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"\([^()]*\)", " _ ", text)
    return re.search(r"\border\s+by\b", text, re.IGNORECASE) is not None


def _closing_paren(text: str) -> int:
    """Index of the parenthesis closing the one at text[0]; -1 if it is never closed."""
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return index
    return -1


def _normalize(row: tuple) -> tuple:
    """Make values that should count as equal compare (and hash) equal.

    Floats are rounded to 6 significant digits, but never past the units digit, so that a float
    holding a whole number equals that int (1.0 == 1, 1234567.0 == 1234567). Two floats straddling
    a rounding boundary can still differ; for results computed two ways that is vanishingly rare.
    """
    return tuple(_round_float(value) if isinstance(value, float) else value for value in row)


def _round_float(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    decimals = _SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    return round(value, max(decimals, 0))


# ---------------------------------------------------------------------------------------------
# spider: DISTINCT removed, ordered when "order by" is anywhere in the gold, exact values


def spider_prepare(sql: str) -> str:
    """test-suite-sql-eval's `postprocess` then `remove_distinct`, on SQLite's tokens.

    Every word "distinct" outside quotes and comments goes (as the official tokenizer's tokens
    do); quoted names and string literals keep their text.
    """
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    lexemes = sql_lexemes(sql)
    if lexemes is None:  # does not lex: the official tokenizer would keep it as text; so do we
        return sql
    return "".join(
        re.sub(r"(?<![\w$])distinct(?![\w$])", "", piece, flags=re.IGNORECASE) if kind == "other" else piece
        for kind, piece in lexemes
    )


def spider_is_ordered(gold_sql: str) -> bool:
    """`'order by' in g_str.lower()`: anywhere in the text, one space between the words, as the official code reads it."""
    return "order by" in gold_sql.lower()


def _spider_same(gold_rows: list[tuple], candidate_rows: list[tuple], ordered: bool) -> bool:
    return _equal_up_to_columns(gold_rows, candidate_rows, ordered=ordered, normalize=tuple)


def _spider_differ(gold_rows: list[tuple], candidate_rows: list[tuple], ordered: bool) -> str:
    return _describe_difference(gold_rows, candidate_rows, ordered=ordered, normalize=tuple)


# ---------------------------------------------------------------------------------------------
# bird: row sets, column order counts, exact values


def _bird_same(gold_rows: list[tuple], candidate_rows: list[tuple], ordered: bool) -> bool:
    return set(candidate_rows) == set(gold_rows)


def _bird_differ(gold_rows: list[tuple], candidate_rows: list[tuple], ordered: bool) -> str:
    gold, candidate = set(gold_rows), set(candidate_rows)
    missing = next((row for row in gold_rows if row not in candidate), None)
    if missing is not None:
        return one_line(f"result differs from gold as row sets (gold row {_short(missing)} not in the candidate's result)")
    extra = next(row for row in candidate_rows if row not in gold)
    return one_line(f"result differs from gold as row sets (row {_short(extra)} is not in the gold's result)")


# ---------------------------------------------------------------------------------------------
# Shared by execution and spider


def _equal_up_to_columns(
    gold_rows: list[tuple], candidate_rows: list[tuple], *, ordered: bool, normalize: Callable[[tuple], tuple]
) -> bool:
    """Equal rows (a multiset unless `ordered`) under some order of the candidate's columns.

    Column orders are pruned first: a candidate column can only stand for a gold column holding
    the same multiset of values, so usually a single order is left to try (at most 1,000 are).
    """
    if gold_rows == candidate_rows:  # the usual correct case (and two empty results), settled fast
        return True
    if len(gold_rows) != len(candidate_rows) or len(gold_rows[0]) != len(candidate_rows[0]):
        return False
    gold = [normalize(row) for row in gold_rows]
    candidate = [normalize(row) for row in candidate_rows]
    wanted = gold if ordered else Counter(gold)
    for order in itertools.islice(_column_orders(gold, candidate), _MAX_COLUMN_PERMUTATIONS):
        reordered = [tuple(row[column] for column in order) for row in candidate]
        if (reordered if ordered else Counter(reordered)) == wanted:
            return True
    return False


def _column_orders(gold: list[tuple], candidate: list[tuple]) -> Iterator[tuple[int, ...]]:
    """Candidate column orders worth trying: column j may stand for gold column i only when both
    hold the same multiset of values."""
    width = len(gold[0])
    gold_columns = [Counter(row[i] for row in gold) for i in range(width)]
    candidate_columns = [Counter(row[j] for row in candidate) for j in range(width)]
    choices = [[j for j in range(width) if candidate_columns[j] == gold_columns[i]] for i in range(width)]

    def extend(order: list[int]) -> Iterator[tuple[int, ...]]:
        if len(order) == width:
            yield tuple(order)
            return
        for column in choices[len(order)]:
            if column not in order:
                yield from extend([*order, column])

    return extend([])


def _describe_difference(
    gold_rows: list[tuple], candidate_rows: list[tuple], *, ordered: bool, normalize: Callable[[tuple], tuple] = _normalize
) -> str:
    """One short line saying how a wrong result differs from the gold one."""
    if len(gold_rows) != len(candidate_rows):
        return f"expected {len(gold_rows)} rows, got {len(candidate_rows)}"
    if len(gold_rows[0]) != len(candidate_rows[0]):
        return f"expected {len(gold_rows[0])} columns, got {len(candidate_rows[0])}"
    if ordered and _equal_up_to_columns(gold_rows, candidate_rows, ordered=False, normalize=normalize):
        return "same rows as the gold query but in another order (the gold query has ORDER BY)"
    gold = [normalize(row) for row in gold_rows]
    candidate = [normalize(row) for row in candidate_rows]
    if ordered:
        differing = ((n, g, c) for n, (g, c) in enumerate(zip(gold, candidate), 1) if g != c)
        line, expected, got = next(differing, (1, gold[0], candidate[0]))
        return one_line(f"result differs from gold (row {line}: expected {_short(expected)}, got {_short(got)})")
    candidate_counts = Counter(candidate)
    missing = next((row for row in gold if not candidate_counts[row]), gold[0])
    return one_line(f"result differs from gold (gold row {_short(missing)} not in the candidate's result)")


def _short(row: tuple) -> str:
    text = repr(row)
    return text if len(text) <= 60 else text[:57] + "..."



def _unchanged(sql: str) -> str:
    return sql


_RULES = {
    "execution": MatchRule(
        "execution",
        prepare=_unchanged,
        is_ordered=gold_is_ordered,
        same=lambda gold, candidate, ordered: results_match(gold, candidate, ordered=ordered),
        differ=lambda gold, candidate, ordered: _describe_difference(gold, candidate, ordered=ordered),
    ),
    "spider": MatchRule("spider", prepare=spider_prepare, is_ordered=spider_is_ordered, same=_spider_same, differ=_spider_differ),
    "bird": MatchRule("bird", prepare=_unchanged, is_ordered=lambda gold_sql: False, same=_bird_same, differ=_bird_differ),
}
assert tuple(_RULES) == MATCH_RULES
