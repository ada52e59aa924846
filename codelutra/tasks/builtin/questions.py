"""Question families: each turns any domain's metadata into a (question, gold SQL) pair in Spider's style.

A family draws a table, columns and real values from the database with the seeded RNG and words the
question with one of several paraphrases. It returns None when its draw does not fit (a tie would make
"the highest" ambiguous, a column has too few values); the caller then draws again. Families only use the
metadata in `domains.py`, so the ones learned on the train databases apply unchanged to the held-out ones.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from typing import NamedTuple

from .domains import Column, Domain, Link, Table


class Draft(NamedTuple):
    question: str
    sql: str


class Condition(NamedTuple):
    """A WHERE condition and its English: "from Boston" / "city = 'Boston'"."""

    phrase: str
    sql: str
    column: Column


class Context:
    """What every family draws from: the domain's metadata, its database (for real values) and the seeded RNG."""

    def __init__(self, domain: Domain, db: sqlite3.Connection, rng: random.Random):
        self.domain = domain
        self.db = db
        self.rng = rng
        self._values: dict[tuple[str, str], list] = {}

    def values(self, table: Table, column: Column) -> list:
        """The column's distinct values, sorted."""
        key = (table.name, column.name)
        if key not in self._values:
            sql = f"SELECT DISTINCT {column.name} FROM {table.name} ORDER BY {column.name}"
            self._values[key] = self.first_column(sql)
        return self._values[key]

    def first_column(self, sql: str) -> list:
        return [row[0] for row in self.db.execute(sql)]

    def table_with(self, *kinds: str) -> Table | None:
        """A random table that has a column of each of `kinds`."""
        fitting = [t for t in self.domain.tables if all(t.of_kind(kind) for kind in kinds)]
        return self.rng.choice(fitting) if fitting else None

    def link(self) -> tuple[Link, Table, Table]:
        link = self.rng.choice(self.domain.links)
        return link, self.domain.table(link.child), self.domain.table(link.parent)

    def no_tie(self, ordered_sql: str, k: int) -> bool:
        """Whether the k-th value of an ordered query differs from the next, so LIMIT k has one right answer."""
        values = self.first_column(ordered_sql)
        return len(values) > k and values[k - 1] != values[k]

    def all_different(self, sql: str) -> bool:
        """Whether a sort key has no repeated value, so ORDER BY gives one right order."""
        values = self.first_column(sql)
        return len(values) >= 2 and len(set(values)) == len(values)


# --- Wording --------------------------------------------------------------------------------------


def plural(column: Column) -> str:
    """The plural of the column's noun: "city" -> "cities", "number of pages" -> "numbers of pages"."""
    if column.nouns:
        return column.nouns
    head, of, tail = column.noun.partition(" of ")
    if head.endswith("y") and head[-2] not in "aeiou":
        head = head[:-1] + "ies"
    elif head.endswith(("s", "x", "ch", "sh")):
        head += "es"
    else:
        head += "s"
    return head + of + tail


def be(column: Column) -> str:
    """The verb after the column's noun: "age is", but "calories are"."""
    return "are" if column.nouns == column.noun else "is"


def of_one(table: Table, column: Column) -> str:
    """The column named after its table: "student age", "team name", but "flight number", not "flight flight number"."""
    return column.noun if column.noun.startswith(table.singular) else f"{table.singular} {column.noun}"


def literal(value) -> str:
    """A value as SQL writes it."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def where_equal(rng: random.Random, column: Column, value) -> str:
    return rng.choice(column.equal + ("whose {noun} {be} {v}",)).format(noun=column.noun, be=be(column), v=value)


def where_compare(rng: random.Random, column: Column, value, above: bool) -> str:
    if column.kind == "date":
        generic = ("with {noun} after {v}",) if above else ("with {noun} before {v}",)
    elif above:
        generic = ("whose {noun} {be} greater than {v}", "with {noun} above {v}")
    else:
        generic = ("whose {noun} {be} less than {v}", "with {noun} below {v}")
    templates = (column.above if above else column.below) + generic
    return rng.choice(templates).format(noun=column.noun, be=be(column), v=value)


def middle(rng: random.Random, values: list):
    """A value away from both ends of the sorted `values`, so rows lie on either side of it."""
    margin = max(1, len(values) // 5)
    if len(values) < 2 * margin + 1:
        return None
    return values[rng.randint(margin, len(values) - 1 - margin)]


def condition(
    c: Context, table: Table, kinds=("category", "number", "date"), alias: str = "", exclude=()
) -> Condition | None:
    """A random filter on one column: equality for categories, > or < a middle value for numbers and dates."""
    columns = [col for col in table.of_kind(*kinds) if col not in exclude]
    if not columns:
        return None
    column = c.rng.choice(columns)
    values = c.values(table, column)
    if column.kind == "category":
        value = c.rng.choice(values)
        return Condition(where_equal(c.rng, column, value), f"{alias}{column.name} = {literal(value)}", column)
    value = middle(c.rng, values)
    if value is None:
        return None
    above = c.rng.random() < 0.5
    phrase = where_compare(c.rng, column, value, above)
    return Condition(phrase, f"{alias}{column.name} {'>' if above else '<'} {literal(value)}", column)


def shown(c: Context, table: Table, exclude=()) -> Column | None:
    """The column a question asks for: usually the name or title, sometimes another plain column."""
    if table.label is not None and table.label not in exclude and c.rng.random() < 0.7:
        return table.label
    columns = [col for col in table.of_kind("label", "category", "number", "date") if col not in exclude]
    return c.rng.choice(columns) if columns else None


def ask_list(rng: random.Random, what: str, whom: str) -> str:
    """A request for `what` ("names") of `whom` ("students from Boston")."""
    return rng.choice([
        f"List the {what} of {whom}.",
        f"What are the {what} of {whom}?",
        f"Show the {what} of {whom}.",
        f"Find the {what} of {whom}.",
        f"Give the {what} of {whom}.",
        f"Return the {what} of {whom}.",
    ])


def ask_count(rng: random.Random, whom: str) -> str:
    return rng.choice([
        f"How many {whom} are there?",
        f"Count the {whom}.",
        f"Count the number of {whom}.",
        f"What is the number of {whom}?",
        f"Find the number of {whom}.",
        f"What is the total number of {whom}?",
    ])


AGGREGATE_WORDS = {
    "avg": ("average", "mean"),
    "max": ("maximum", "highest"),
    "min": ("minimum", "lowest"),
    "sum": ("total",),
}


def aggregate_of(rng: random.Random, column: Column) -> tuple[str, str]:
    """An SQL aggregate that makes sense for `column` and a word for it: ("avg", "average")."""
    function = rng.choice(["avg", "max", "min"] + (["sum"] if column.summable else []))
    return function, rng.choice(AGGREGATE_WORDS[function])


def highest_word(column: Column, highest: bool) -> str:
    if column.kind == "date":
        return "latest" if highest else "earliest"
    return "highest" if highest else "lowest"


def extreme(rng: random.Random, column: Column, table: Table, highest: bool) -> str:
    """One row at an extreme: "the oldest student" or "the student with the highest age"."""
    options = [f"the {table.singular} with the {highest_word(column, highest)} {column.noun}"]
    adjective = column.most if highest else column.least
    if adjective:
        options.append(f"the {adjective} {table.singular}")
    return rng.choice(options)


def extremes(rng: random.Random, column: Column, table: Table, k: int, highest: bool) -> str:
    """The k rows at an extreme: "the 3 oldest students", "the 3 students with the highest age" ..."""
    options = [f"the {k} {table.plural} with the {highest_word(column, highest)} {column.noun}"]
    adjective = column.most if highest else column.least
    if adjective:
        options.append(f"the {k} {adjective} {table.plural}")
    if highest and column.kind == "number":
        options.append(f"the top {k} {table.plural} by {column.noun}")
    return rng.choice(options)


def order_phrase(rng: random.Random, column: Column, descending: bool) -> str:
    noun = column.noun
    if column.kind == "label":
        if descending:
            return rng.choice(["in reverse alphabetical order", f"sorted by {noun} in descending order"])
        return rng.choice(["in alphabetical order", "sorted alphabetically", f"sorted by {noun}"])
    if descending:
        direction = "from latest to earliest" if column.kind == "date" else "from highest to lowest"
        return rng.choice([
            f"sorted by {noun} in descending order",
            f"in descending order of {noun}",
            f"ordered by {noun} {direction}",
        ])
    direction = "from earliest to latest" if column.kind == "date" else "from lowest to highest"
    return rng.choice([f"sorted by {noun}", f"in ascending order of {noun}", f"ordered by {noun} {direction}"])


def order_sql(column: Column, descending: bool) -> str:
    return f"ORDER BY {column.name}" + (" DESC" if descending else "")


def join_sql(link: Link) -> str:
    return f"FROM {link.child} AS T1 JOIN {link.parent} AS T2 ON T1.{link.column} = T2.{link.column}"


def count_threshold(rng: random.Random, counts: list[int]) -> tuple[str, str, int] | None:
    """A HAVING count(*) condition met by some groups but not all: (SQL operator, words, n)."""
    distinct = sorted(set(counts))
    if rng.random() < 0.5:
        choices = [n for n in distinct[:-1] if n >= 2]
        operator, words = ">", "more than"
    else:
        choices = [n for n in distinct[1:] if n >= 2]
        operator, words = ">=", "at least"
    if not choices:
        return None
    n = rng.choice(choices)
    return operator, f"{words} {n}", n


# --- Easy: one table, at most one condition -------------------------------------------------------


def count_rows(c: Context) -> Draft | None:
    table = c.rng.choice(c.domain.tables)
    return Draft(ask_count(c.rng, table.plural), f"SELECT count(*) FROM {table.name}")


def list_columns(c: Context) -> Draft | None:
    """One or two columns of every row: the names and ages of all students."""
    table = c.rng.choice(c.domain.tables)
    columns = table.of_kind("label", "category", "number", "date")
    chosen = sorted(c.rng.sample(columns, c.rng.choice([1, 1, 2])), key=columns.index)
    what = " and ".join(plural(column) for column in chosen)
    sql = f"SELECT {', '.join(column.name for column in chosen)} FROM {table.name}"
    return Draft(ask_list(c.rng, what, f"all {table.plural}"), sql)


def filter_by_value(c: Context) -> Draft | None:
    """Rows with one category value: the names of students from Boston."""
    table = c.table_with("category")
    column = c.rng.choice(table.of_kind("category"))
    value = c.rng.choice(c.values(table, column))
    asked = shown(c, table, exclude=(column,))
    whom = f"{table.plural} {where_equal(c.rng, column, value)}"
    sql = f"SELECT {asked.name} FROM {table.name} WHERE {column.name} = {literal(value)}"
    return Draft(ask_list(c.rng, plural(asked), whom), sql)


def count_matching(c: Context) -> Draft | None:
    """How many rows meet one condition: how many students are older than 16."""
    table = c.rng.choice(c.domain.tables)
    where = condition(c, table)
    if where is None:
        return None
    sql = f"SELECT count(*) FROM {table.name} WHERE {where.sql}"
    return Draft(ask_count(c.rng, f"{table.plural} {where.phrase}"), sql)


def compare_values(c: Context) -> Draft | None:
    """Rows above or below a number or date: the names of teachers with a salary above 50000."""
    table = c.table_with("number")
    where = condition(c, table, kinds=("number", "date"))
    if where is None:
        return None
    asked = shown(c, table, exclude=(where.column,))
    sql = f"SELECT {asked.name} FROM {table.name} WHERE {where.sql}"
    return Draft(ask_list(c.rng, plural(asked), f"{table.plural} {where.phrase}"), sql)


def match_pattern(c: Context) -> Draft | None:
    """Names or titles matched with LIKE: starting with some letters, or containing a word."""
    table = c.table_with("label")
    column = table.label
    value = c.rng.choice(c.values(table, column))
    words = [word for word in value.split() if len(word) >= 4 and word != value]
    if words and c.rng.random() < 0.6:
        part = c.rng.choice(words)
        pattern = f"%{part}%"
        phrase = c.rng.choice([
            f"whose {column.noun} contains '{part}'",
            f"with '{part}' in the {column.noun}",
            f"whose {column.noun} includes '{part}'",
        ])
    else:
        part = value[: c.rng.choice([1, 2])]
        pattern = f"{part}%"
        phrase = c.rng.choice(
            [f"whose {column.noun} starts with '{part}'", f"whose {column.noun} begins with '{part}'"]
        )
    asked = shown(c, table)
    sql = f"SELECT {asked.name} FROM {table.name} WHERE {column.name} LIKE {literal(pattern)}"
    return Draft(ask_list(c.rng, plural(asked), f"{table.plural} {phrase}"), sql)


def distinct_values(c: Context) -> Draft | None:
    """The different values of a category, or how many there are."""
    table = c.table_with("category")
    column = c.rng.choice(table.of_kind("category"))
    nouns, rows = plural(column), table.plural
    if c.rng.random() < 0.5:
        question = c.rng.choice([
            f"What are the distinct {nouns} of {rows}?",
            f"List the different {nouns} of {rows}.",
            f"Show all distinct {nouns} of {rows}.",
            f"Find the different {nouns} that {rows} have.",
        ])
        return Draft(question, f"SELECT DISTINCT {column.name} FROM {table.name}")
    question = c.rng.choice([
        f"How many different {nouns} do {rows} have?",
        f"Count the distinct {nouns} of {rows}.",
        f"How many distinct {nouns} are there among {rows}?",
        f"Find the number of different {nouns} of {rows}.",
    ])
    return Draft(question, f"SELECT count(DISTINCT {column.name}) FROM {table.name}")


def aggregate(c: Context) -> Draft | None:
    """One statistic over all rows: the average age of students, or the maximum and minimum."""
    table = c.table_with("number")
    column = c.rng.choice(table.of_kind("number"))
    if c.rng.random() < 0.25:
        question = c.rng.choice([
            f"What are the maximum and minimum {column.noun} of all {table.plural}?",
            f"Find the highest and lowest {column.noun} among {table.plural}.",
        ])
        return Draft(question, f"SELECT max({column.name}), min({column.name}) FROM {table.name}")
    function, word = aggregate_of(c.rng, column)
    question = c.rng.choice([
        f"What is the {word} {column.noun} of all {table.plural}?",
        f"Find the {word} {column.noun} of {table.plural}.",
        f"Compute the {word} {column.noun} across all {table.plural}.",
        f"What is the {word} {column.noun} among {table.plural}?",
    ])
    return Draft(question, f"SELECT {function}({column.name}) FROM {table.name}")


def superlative(c: Context) -> Draft | None:
    """The one row with the highest or lowest value: the name of the oldest student."""
    table = c.table_with("number")
    column = c.rng.choice(table.of_kind("number", "date"))
    highest = c.rng.random() < 0.5
    order = order_sql(column, highest)
    if not c.no_tie(f"SELECT {column.name} FROM {table.name} {order}", 1):
        return None
    asked = shown(c, table, exclude=(column,))
    the_one = extreme(c.rng, column, table, highest)
    question = c.rng.choice([
        f"What is the {asked.noun} of {the_one}?",
        f"Find the {asked.noun} of {the_one}.",
        f"Give the {asked.noun} of {the_one}.",
        f"Which {table.singular} has the {highest_word(column, highest)} {column.noun}? Give its {asked.noun}.",
    ])
    return Draft(question, f"SELECT {asked.name} FROM {table.name} {order} LIMIT 1")


def sort_key(c: Context, table: Table, where: Condition | None = None) -> tuple[Column, Column] | None:
    """A sort key and the column to show: names sorted by name, or a column sorted by a number or date
    whose values (among the rows `where` picks) are all different, so that there is one right order."""
    if table.label is not None and c.rng.random() < 0.35:
        return table.label, table.label
    keys = [col for col in table.of_kind("number", "date") if where is None or col != where.column]
    if not keys:
        return None
    key = c.rng.choice(keys)
    condition_sql = f" WHERE {where.sql}" if where else ""
    if not c.all_different(f"SELECT {key.name} FROM {table.name}{condition_sql}"):
        return None
    asked = shown(c, table, exclude=(key, where.column) if where else (key,))
    return (key, asked) if asked else None


def sort_all(c: Context) -> Draft | None:
    """Every row, sorted."""
    table = c.rng.choice(c.domain.tables)
    chosen = sort_key(c, table)
    if chosen is None:
        return None
    column, asked = chosen
    descending = c.rng.random() < 0.5
    order = order_phrase(c.rng, column, descending)
    question = c.rng.choice([
        f"List the {plural(asked)} of all {table.plural} {order}.",
        f"Show the {plural(asked)} of all {table.plural}, {order}.",
        f"What are the {plural(asked)} of all {table.plural}, {order}?",
    ])
    return Draft(question, f"SELECT {asked.name} FROM {table.name} {order_sql(column, descending)}")


# --- Medium: two conditions, grouping, top-k, simple joins ----------------------------------------


def two_conditions(c: Context) -> Draft | None:
    """Rows meeting two conditions joined by AND or OR."""
    table = c.rng.choice(c.domain.tables)
    first = condition(c, table)
    second = first and condition(c, table, exclude=(first.column,))
    if second is None:
        return None
    joiner = c.rng.choice(["and", "or"])
    whom = f"{table.plural} {first.phrase} {joiner} {second.phrase}"
    where = f"{first.sql} {joiner.upper()} {second.sql}"
    asked = shown(c, table, exclude=(first.column, second.column))
    if asked is None or c.rng.random() < 0.3:
        return Draft(ask_count(c.rng, whom), f"SELECT count(*) FROM {table.name} WHERE {where}")
    return Draft(ask_list(c.rng, plural(asked), whom), f"SELECT {asked.name} FROM {table.name} WHERE {where}")


def between(c: Context) -> Draft | None:
    """Rows with a number or date in a range."""
    table = c.table_with("number")
    column = c.rng.choice(table.of_kind("number", "date"))
    values = c.values(table, column)
    margin, span = max(1, len(values) // 5), max(1, len(values) // 10)
    if len(values) < 2 * margin + span + 1:
        return None
    low_index = c.rng.randint(margin, len(values) - 1 - margin - span)
    low, high = values[low_index], values[c.rng.randint(low_index + span, len(values) - 1 - margin)]
    phrase = c.rng.choice(
        [f"whose {column.noun} {be(column)} between {low} and {high}", f"with {column.noun} between {low} and {high}"]
    )
    where = f"{column.name} BETWEEN {literal(low)} AND {literal(high)}"
    if c.rng.random() < 0.3:
        return Draft(ask_count(c.rng, f"{table.plural} {phrase}"), f"SELECT count(*) FROM {table.name} WHERE {where}")
    asked = shown(c, table, exclude=(column,))
    sql = f"SELECT {asked.name} FROM {table.name} WHERE {where}"
    return Draft(ask_list(c.rng, plural(asked), f"{table.plural} {phrase}"), sql)


def top_k(c: Context) -> Draft | None:
    """The k rows with the highest or lowest values: the names of the 3 oldest students."""
    table = c.table_with("number")
    column = c.rng.choice(table.of_kind("number"))
    k = c.rng.choice([2, 3, 3, 5])
    highest = c.rng.random() < 0.5
    order = order_sql(column, highest)
    if not c.no_tie(f"SELECT {column.name} FROM {table.name} {order}", k):
        return None
    asked = shown(c, table, exclude=(column,))
    group = extremes(c.rng, column, table, k, highest)
    return Draft(ask_list(c.rng, plural(asked), group), f"SELECT {asked.name} FROM {table.name} {order} LIMIT {k}")


def count_per_group(c: Context) -> Draft | None:
    """GROUP BY with COUNT: how many students live in each city."""
    table = c.table_with("category")
    column = c.rng.choice(table.of_kind("category"))
    noun, rows = column.noun, table.plural
    question = c.rng.choice([
        f"How many {rows} are there for each {noun}?",
        f"Show each {noun} and the number of {rows}.",
        f"For each {noun}, count the number of {rows}.",
        f"Count the {rows} in each {noun}.",
        f"What is the number of {rows} for each {noun}?",
    ])
    return Draft(question, f"SELECT {column.name}, count(*) FROM {table.name} GROUP BY {column.name}")


def aggregate_per_group(c: Context) -> Draft | None:
    """GROUP BY with AVG, MAX, MIN or SUM: the average salary of players for each position."""
    table = c.table_with("category", "number")
    if table is None:
        return None
    group = c.rng.choice(table.of_kind("category"))
    measured = c.rng.choice(table.of_kind("number"))
    function, word = aggregate_of(c.rng, measured)
    rows = table.plural
    question = c.rng.choice([
        f"What is the {word} {measured.noun} of {rows} for each {group.noun}?",
        f"For each {group.noun}, show the {group.noun} and the {word} {measured.noun} of {rows}.",
        f"Show the {word} {measured.noun} of {rows} in each {group.noun}.",
        f"Find the {word} {measured.noun} of {rows} grouped by {group.noun}.",
    ])
    sql = f"SELECT {group.name}, {function}({measured.name}) FROM {table.name} GROUP BY {group.name}"
    return Draft(question, sql)


def largest_group(c: Context) -> Draft | None:
    """GROUP BY ... ORDER BY count(*) LIMIT 1: the city with the most students."""
    table = c.table_with("category")
    column = c.rng.choice(table.of_kind("category"))
    most = c.rng.random() < 0.6
    order = "ORDER BY count(*) DESC" if most else "ORDER BY count(*)"
    if not c.no_tie(f"SELECT count(*) FROM {table.name} GROUP BY {column.name} {order}", 1):
        return None
    noun, rows = column.noun, table.plural
    if most:
        options = [
            f"Which {noun} has the most {rows}?",
            f"What is the {noun} with the largest number of {rows}?",
            f"Which {noun} is the most common among {rows}?",
        ]
    else:
        options = [
            f"Which {noun} has the fewest {rows}?",
            f"What is the {noun} with the smallest number of {rows}?",
            f"Which {noun} is the least common among {rows}?",
        ]
    sql = f"SELECT {column.name} FROM {table.name} GROUP BY {column.name} {order} LIMIT 1"
    return Draft(c.rng.choice(options), sql)


def join_list(c: Context) -> Draft | None:
    """A column of each child row next to a column of its parent: each book's title and its author's name."""
    link, child, parent = c.link()
    child_column, parent_column = shown(c, child), parent.label
    mine, theirs = child_column.noun, parent_column.noun
    question = c.rng.choice([
        f"List the {mine} of each {child.singular} together with the {theirs} of its {parent.singular}.",
        f"For each {child.singular}, show its {mine} and the {theirs} of its {parent.singular}.",
        f"What is the {mine} and {of_one(parent, parent_column)} of each {child.singular}?",
    ])
    return Draft(question, f"SELECT T1.{child_column.name}, T2.{parent_column.name} {join_sql(link)}")


def join_filter(c: Context) -> Draft | None:
    """Child rows whose parent meets a condition: the titles of books written by authors from France."""
    link, child, parent = c.link()
    if parent.label is not None and c.rng.random() < 0.35:
        value = c.rng.choice(c.values(parent, parent.label))
        whom = f"{child.plural} {link.verb} the {parent.singular} '{value}'"
        where = f"T2.{parent.label.name} = {literal(value)}"
    else:
        parent_condition = condition(c, parent, alias="T2.")
        if parent_condition is None:
            return None
        whom = f"{child.plural} {link.verb} {parent.plural} {parent_condition.phrase}"
        where = parent_condition.sql
    if c.rng.random() < 0.3:
        return Draft(ask_count(c.rng, whom), f"SELECT count(*) {join_sql(link)} WHERE {where}")
    asked = shown(c, child)
    return Draft(ask_list(c.rng, plural(asked), whom), f"SELECT T1.{asked.name} {join_sql(link)} WHERE {where}")


def filtered_aggregate(c: Context) -> Draft | None:
    """A statistic over the rows meeting a condition: the average age of students from Boston."""
    table = c.table_with("number")
    where = condition(c, table)
    if where is None:
        return None
    measured_columns = [col for col in table.of_kind("number") if col != where.column]
    if not measured_columns:
        return None
    measured = c.rng.choice(measured_columns)
    function, word = aggregate_of(c.rng, measured)
    rows = f"{table.plural} {where.phrase}"
    question = c.rng.choice([
        f"What is the {word} {measured.noun} of {rows}?",
        f"Find the {word} {measured.noun} of {rows}.",
        f"Among {rows}, what is the {word} {measured.noun}?",
    ])
    return Draft(question, f"SELECT {function}({measured.name}) FROM {table.name} WHERE {where.sql}")


def filtered_sort(c: Context) -> Draft | None:
    """Rows meeting a condition, sorted."""
    table = c.rng.choice(c.domain.tables)
    where = condition(c, table)
    chosen = where and sort_key(c, table, where)
    if chosen is None:
        return None
    key, asked = chosen
    descending = c.rng.random() < 0.5
    rows, order = f"{table.plural} {where.phrase}", order_phrase(c.rng, key, descending)
    question = c.rng.choice([
        f"List the {plural(asked)} of {rows}, {order}.",
        f"Show the {plural(asked)} of {rows}, {order}.",
        f"What are the {plural(asked)} of {rows}, {order}?",
    ])
    return Draft(question, f"SELECT {asked.name} FROM {table.name} WHERE {where.sql} {order_sql(key, descending)}")


# --- Hard: HAVING, grouped joins, nested queries, set operations ----------------------------------


def groups_having_count(c: Context) -> Draft | None:
    """GROUP BY ... HAVING count(*): the cities with more than 10 students."""
    table = c.table_with("category")
    column = c.rng.choice(table.of_kind("category"))
    threshold = count_threshold(c.rng, c.first_column(f"SELECT count(*) FROM {table.name} GROUP BY {column.name}"))
    if threshold is None:
        return None
    operator, words, n = threshold
    nouns, rows = plural(column), table.plural
    question = c.rng.choice([
        f"Which {nouns} have {words} {rows}?",
        f"Find the {nouns} with {words} {rows}.",
        f"List the {nouns} that have {words} {rows}.",
    ])
    sql = f"SELECT {column.name} FROM {table.name} GROUP BY {column.name} HAVING count(*) {operator} {n}"
    return Draft(question, sql)


def groups_having_average(c: Context) -> Draft | None:
    """GROUP BY ... HAVING avg(...): the positions whose players earn more than some amount on average."""
    table = c.table_with("category", "number")
    if table is None:
        return None
    group = c.rng.choice(table.of_kind("category"))
    measured = c.rng.choice(table.of_kind("number"))
    average = f"avg({measured.name})"
    averages = c.first_column(f"SELECT {average} FROM {table.name} GROUP BY {group.name} ORDER BY {average}")
    if len(averages) < 3:
        return None
    i = c.rng.randint(0, len(averages) - 2)
    middle_point = (averages[i] + averages[i + 1]) / 2
    threshold = round(middle_point) if measured.type == "INTEGER" else round(middle_point, 2)
    if not averages[i] < threshold < averages[i + 1]:
        return None
    above = c.rng.random() < 0.5
    compared = c.rng.choice(["above", "greater than"] if above else ["below", "less than"])
    nouns, rows = plural(group), table.plural
    question = c.rng.choice([
        f"Which {nouns} have an average {of_one(table, measured)} {compared} {threshold}?",
        f"Find the {nouns} whose {rows} have an average {measured.noun} {compared} {threshold}.",
        f"List the {nouns} where the average {measured.noun} of {rows} {be(measured)} {compared} {threshold}.",
    ])
    having = f"HAVING {average} {'>' if above else '<'} {threshold}"
    sql = f"SELECT {group.name} FROM {table.name} GROUP BY {group.name} {having}"
    return Draft(question, sql)


def join_count_per_parent(c: Context) -> Draft | None:
    """JOIN with GROUP BY: each author's name and the number of their books."""
    link, child, parent = c.link()
    name = parent.label
    question = c.rng.choice([
        f"For each {parent.singular}, show the {name.noun} and the number of {child.plural}.",
        f"How many {child.plural} does each {parent.singular} have? Show the {of_one(parent, name)} and the count.",
        f"Count the {child.plural} of each {parent.singular}, showing the {of_one(parent, name)}.",
    ])
    return Draft(question, f"SELECT T2.{name.name}, count(*) {join_sql(link)} GROUP BY T1.{link.column}")


def join_top_parent(c: Context) -> Draft | None:
    """JOIN, GROUP BY, ORDER BY count(*) LIMIT 1: the author with the most books."""
    link, child, parent = c.link()
    if not c.no_tie(f"SELECT count(*) FROM {child.name} GROUP BY {link.column} ORDER BY count(*) DESC", 1):
        return None
    name = parent.label
    question = c.rng.choice([
        f"Which {parent.singular} has the most {child.plural}? Give the {name.noun}.",
        f"What is the {name.noun} of the {parent.singular} with the most {child.plural}?",
        f"Find the {name.noun} of the {parent.singular} that has the largest number of {child.plural}.",
    ])
    sql = f"SELECT T2.{name.name} {join_sql(link)} GROUP BY T1.{link.column} ORDER BY count(*) DESC LIMIT 1"
    return Draft(question, sql)


def join_having(c: Context) -> Draft | None:
    """JOIN, GROUP BY, HAVING: the names of authors with at least 3 books."""
    link, child, parent = c.link()
    threshold = count_threshold(c.rng, c.first_column(f"SELECT count(*) FROM {child.name} GROUP BY {link.column}"))
    if threshold is None:
        return None
    operator, words, n = threshold
    name = parent.label
    if c.rng.random() < 0.3:
        question = f"Which {parent.plural} have {words} {child.plural}? Give their {plural(name)}."
    else:
        question = ask_list(c.rng, plural(name), f"{parent.plural} with {words} {child.plural}")
    sql = f"SELECT T2.{name.name} {join_sql(link)} GROUP BY T1.{link.column} HAVING count(*) {operator} {n}"
    return Draft(question, sql)


def parents_without_children(c: Context) -> Draft | None:
    """NOT IN a subquery: the authors that have no books."""
    link, child, parent = c.link()
    whom = c.rng.choice([
        f"{parent.plural} without any {child.plural}",
        f"{parent.plural} that have no {child.plural}",
        f"{parent.plural} that do not have any {child.plural}",
    ])
    where = f"WHERE {link.column} NOT IN (SELECT {link.column} FROM {child.name})"
    if c.rng.random() < 0.3:
        return Draft(ask_count(c.rng, whom), f"SELECT count(*) FROM {parent.name} {where}")
    asked = shown(c, parent)
    return Draft(ask_list(c.rng, plural(asked), whom), f"SELECT {asked.name} FROM {parent.name} {where}")


def parents_with_matching_children(c: Context) -> Draft | None:
    """IN a subquery with a condition: the authors that have books in the Fiction genre."""
    link, child, parent = c.link()
    child_condition = condition(c, child)
    if child_condition is None:
        return None
    whom = c.rng.choice([
        f"{parent.plural} that have {child.plural} {child_condition.phrase}",
        f"{parent.plural} with at least one {child.singular} {child_condition.phrase}",
    ])
    asked = shown(c, parent)
    subquery = f"SELECT {link.column} FROM {child.name} WHERE {child_condition.sql}"
    sql = f"SELECT {asked.name} FROM {parent.name} WHERE {link.column} IN ({subquery})"
    return Draft(ask_list(c.rng, plural(asked), whom), sql)


def compare_with_average(c: Context) -> Draft | None:
    """A comparison against an AVG subquery: the students older than the average age."""
    table = c.table_with("number")
    column = c.rng.choice(table.of_kind("number"))
    above = c.rng.random() < 0.5
    compared = c.rng.choice(["above", "greater than", "higher than"] if above else ["below", "less than", "lower than"])
    noun, rows = column.noun, table.plural
    whom = c.rng.choice([
        f"{rows} whose {noun} {be(column)} {compared} the average {noun}",
        f"{rows} with {noun} {compared} the average",
        f"{rows} whose {noun} {be(column)} {compared} the average {noun} of all {rows}",
    ])
    asked = shown(c, table, exclude=(column,))
    average = f"(SELECT avg({column.name}) FROM {table.name})"
    sql = f"SELECT {asked.name} FROM {table.name} WHERE {column.name} {'>' if above else '<'} {average}"
    return Draft(ask_list(c.rng, plural(asked), whom), sql)


def set_operands(c: Context) -> tuple[Table, Column, Condition, Condition] | None:
    """A category column to report and two different conditions, for INTERSECT, EXCEPT and UNION."""
    table = c.table_with("category")
    reported = c.rng.choice(table.of_kind("category"))
    first = condition(c, table, exclude=(reported,))
    second = condition(c, table, exclude=(reported,))
    if first is None or second is None or first.sql == second.sql:
        return None
    if first.column == second.column and first.column.kind != "category":  # "score > 50" and "score > 67" overlap
        return None
    return table, reported, first, second


def set_sql(table: Table, reported: Column, first: Condition, operator: str, second: Condition) -> str:
    select = f"SELECT {reported.name} FROM {table.name} WHERE"
    return f"{select} {first.sql} {operator} {select} {second.sql}"


def intersect_groups(c: Context) -> Draft | None:
    """INTERSECT: the cities that have both students in grade 9 and students in grade 12."""
    operands = set_operands(c)
    if operands is None:
        return None
    table, reported, first, second = operands
    nouns, one, other = plural(reported), f"{table.plural} {first.phrase}", f"{table.plural} {second.phrase}"
    question = c.rng.choice([
        f"Which {nouns} have both {one} and {other}?",
        f"Find the {nouns} that have both {one} and {other}.",
        f"List the {nouns} that have {one} and also {other}.",
    ])
    return Draft(question, set_sql(table, reported, first, "INTERSECT", second))


def except_groups(c: Context) -> Draft | None:
    """EXCEPT: the cities that have students in grade 9 but no students in grade 12."""
    operands = set_operands(c)
    if operands is None:
        return None
    table, reported, first, second = operands
    nouns, one, other = plural(reported), f"{table.plural} {first.phrase}", f"{table.plural} {second.phrase}"
    question = c.rng.choice([
        f"Which {nouns} have {one} but no {other}?",
        f"Find the {nouns} that have {one} but not {other}.",
        f"List the {nouns} with {one} and without {other}.",
    ])
    return Draft(question, set_sql(table, reported, first, "EXCEPT", second))


def union_groups(c: Context) -> Draft | None:
    """UNION: the cities that have students in grade 9 or students older than 17."""
    operands = set_operands(c)
    if operands is None:
        return None
    table, reported, first, second = operands
    nouns, one, other = plural(reported), f"{table.plural} {first.phrase}", f"{table.plural} {second.phrase}"
    question = c.rng.choice([
        f"Which {nouns} have {one} or {other}?",
        f"Find the {nouns} that have either {one} or {other}.",
        f"List every {reported.noun} that has {one} or {other}.",
    ])
    return Draft(question, set_sql(table, reported, first, "UNION", second))


Family = Callable[[Context], Draft | None]

# Difficulty levels, each with the share of a database's problems it gets.
FAMILIES: dict[str, tuple[float, list[Family]]] = {
    "easy": (0.40, [
        count_rows, list_columns, filter_by_value, count_matching, compare_values,
        match_pattern, distinct_values, aggregate, superlative, sort_all,
    ]),
    "medium": (0.35, [
        two_conditions, between, top_k, count_per_group, aggregate_per_group,
        largest_group, join_list, join_filter, filtered_aggregate, filtered_sort,
    ]),
    "hard": (0.25, [
        groups_having_count, groups_having_average, join_count_per_parent, join_top_parent, join_having,
        parents_without_children, parents_with_matching_children, compare_with_average,
        intersect_groups, except_groups, union_groups,
    ]),
}
