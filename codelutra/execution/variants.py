"""Database variants: perturbed copies of a task's SQLite database, so that a coincidental match is not `correct`.

On one small database a wrong query often returns the right rows by chance (even `SELECT 3000` when
the answer is 3000); Spider's test-suite accuracy exists for that reason. With `verify.variants: k`,
a candidate that matches the gold on the original database is run again, beside the gold, on k
copies whose rows are perturbed, and stays `correct` only if it matches on every one of them; else
it gets `wrong_result`, the detail naming the variant.

A variant keeps the schema (the file is a copy: tables, types, indexes, views, triggers) and every
constraint the original satisfies, while changing what a query hard-coding an answer would miss:

* rows: about 15% of each table's rows are deleted and new ones added (copies of random rows with
  fresh values in their primary-key and UNIQUE columns), so counts, sums and averages move;
* values: in columns outside keys, about 30% of the cells are redrawn within the column's own
  domain: a value the column already holds (so `WHERE city = 'Paris'` still finds rows), or for
  numbers a value between the column's minimum and maximum with as many decimals;
* foreign keys: about 30% of the references are redrawn among the parent's surviving keys (joins
  change), and a reference whose parent row was deleted always is; rows that still point nowhere
  are deleted. Only foreign keys the original satisfies are kept so (some Spider databases
  violate their own); PRIMARY KEY, UNIQUE, NOT NULL and CHECK are enforced by SQLite on insert:
  a perturbed row it refuses goes back to its original values (a new row is dropped).

The gold query is run on each variant too. Where it fails there (a timeout, say), that variant says
nothing about the candidate and is skipped for that check. Where it returns no rows, the variant is
still used: a candidate must then return none as well, a weaker test but a fair one. Ties broken by
`LIMIT` without a full ORDER BY can make an equivalent query differ on a variant, as on any database.

Variants are made once per (database contents, seed, index) and cached as files (written to a
temporary name, then renamed), `variant-0.sqlite` ... in a folder per database and seed, so k=3
reuses k=2's first two. Generation reads each table into memory: meant for Spider-sized databases.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from codelutra.errors import UserError
from codelutra.execution.sql import SqlCheck, verify_sql
from codelutra.execution.sql_match import GOLD_FAILED
from codelutra.execution.verdict import Verdict, one_line

_GENERATOR_VERSION = 1  # part of the cache folder's name: a change in how variants are made invalidates the cache
_DELETE_ROWS = 0.15  # fraction of each table's rows deleted
_ADD_ROWS = 0.25  # at most this fraction of each table's rows added (at least one)
_REDRAW_VALUE = 0.3  # chance that a cell outside keys is redrawn
_REDRAW_REFERENCE = 0.3  # chance that a foreign key is pointed at another parent row
_MAX_DECIMALS = 6
_SQLITE_HEADER = b"SQLite format 3\x00"


def default_cache_dir() -> Path:
    from codelutra.models import cache_dir

    return cache_dir() / "variants"


# ---------------------------------------------------------------------------------------------
# Judging on variants


def verify_with_variants(
    checks: Sequence[SqlCheck],
    *,
    variants: int,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    timeout_s: float = 5.0,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    match: str = "execution",
) -> list[Verdict]:
    """`verify_sql` on the original databases; with `variants` > 0, what is correct there is rechecked on each variant."""
    verdicts = verify_sql(checks, timeout_s=timeout_s, workers=workers, progress=progress, match=match)
    correct = [i for i, verdict in enumerate(verdicts) if verdict.kind == "correct"]
    if not variants or not correct:
        return verdicts
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    databases = dict.fromkeys(checks[i].db_path for i in correct)
    copies = {db: variant_paths(db, variants, seed=seed, cache_dir=folder) for db in databases}
    rechecks = [
        SqlCheck(str(copies[checks[i].db_path][v]), checks[i].gold_sql, checks[i].candidate_sql)
        for i in correct
        for v in range(variants)
    ]
    on_variants = verify_sql(rechecks, timeout_s=timeout_s, workers=workers, match=match)
    judged = list(verdicts)
    for n, i in enumerate(correct):
        for v, verdict in enumerate(on_variants[n * variants : (n + 1) * variants], 1):
            if verdict.kind == "correct" or verdict.detail.startswith(GOLD_FAILED):
                continue  # matches there, or the gold cannot run there: no evidence against it
            detail = f"correct on the original database but not on variant {v} of {variants} (rows perturbed): "
            detail += f"{verdict.kind}: {verdict.detail}"
            judged[i] = Verdict("wrong_result", one_line(detail), verdicts[i].seconds)
            break
    return judged


def variant_paths(db_path: str | Path, k: int, *, seed: int, cache_dir: str | Path) -> list[Path]:
    """The k variants of a SQLite database, made where missing (cached under `cache_dir`)."""
    source = Path(db_path)
    if not _is_sqlite_file(source):
        raise UserError(f"{db_path}: verify.variants needs a SQLite database file (variants of other databases are not made)")
    digest = _fingerprint(str(source.resolve()), *_stat_key(source))
    folder = Path(cache_dir) / f"{source.stem}-{digest[:16]}-seed{seed}-g{_GENERATOR_VERSION}"
    paths = [folder / f"variant-{index}.sqlite" for index in range(k)]
    for index, path in enumerate(paths):
        if not path.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                build_variant(source, path, random.Random(f"{digest}:{seed}:{index}"))
            except OSError as e:
                raise UserError(f"{folder}: cannot write database variants there ({e.strerror or e}); set verify.variants_dir") from None
    return paths


def _is_sqlite_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=1024)
def _fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of the file's bytes: the cache follows the contents, not the name (memoised per size and mtime)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Making one variant


@dataclass(frozen=True)
class _ForeignKey:
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    unique_sets: tuple[tuple[str, ...], ...]  # the primary key and every UNIQUE index
    foreign_keys: tuple[_ForeignKey, ...]  # those the original satisfies: kept satisfied


@dataclass
class _Row:
    values: list
    original: list | None  # None for a row the variant adds


def build_variant(source: Path, target: Path, rng: random.Random) -> None:
    """Write a perturbed copy of `source` to `target` (atomically: a temporary file renamed over it)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        original = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
        with closing(original), closing(sqlite3.connect(tmp)) as copy:
            original.backup(copy)
        with closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
            conn.text_factory = lambda data: data.decode("utf-8", errors="replace")  # as the sandbox reads it
            _perturb(conn, rng)
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise RuntimeError(f"{source}: the variant fails SQLite's integrity check: {problems[:3]}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _perturb(conn: sqlite3.Connection, rng: random.Random) -> None:
    """Rewrite every table of the open copy: rows planned for all tables first, so that references can follow them."""
    tables = _read_schema(conn)
    schema = {t.name: t for t in tables}
    originals = {t.name: [list(row) for row in conn.execute(f"SELECT {_columns(t.columns)} FROM {_quote(t.name)}")] for t in tables}
    planned = {t.name: _plan_rows(t, originals[t.name], rng) for t in tables}
    protected = {(t.name, c) for t in tables for unique in t.unique_sets for c in unique}
    protected |= {(t.name, c) for t in tables for fk in t.foreign_keys for c in fk.columns}
    protected |= {(fk.parent, c) for t in tables for fk in t.foreign_keys for c in fk.parent_columns}
    triggers = list(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql IS NOT NULL"))
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("BEGIN")
    for name, _ in triggers:
        conn.execute(f"DROP TRIGGER {_quote(name)}")  # rewriting rows must not fire them; put back below
    for table in tables:
        rows = planned[table.name]
        _redraw_values(table, rows, originals[table.name], protected, rng)
        _redraw_references(table, rows, schema, planned, rng)
        _rewrite(conn, table, rows)
    _delete_orphans(conn, tables)
    for _, sql in triggers:
        conn.execute(sql)
    conn.execute("COMMIT")


def _read_schema(conn: sqlite3.Connection) -> list[_Table]:
    names = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name"
        )
    ]
    violated = _violated_foreign_keys(conn, names)
    tables = []
    for name in names:
        columns = _column_names(conn, name)
        primary_key = _primary_key(conn, name)
        unique_sets = [primary_key] if primary_key else []
        for index in conn.execute(f"PRAGMA index_list({_quote(name)})"):
            if index[2] and not index[4]:  # unique, not partial
                unique_sets.append(tuple(row[2] for row in conn.execute(f"PRAGMA index_info({_quote(index[1])})")))
        named = {c.lower(): c for c in columns}  # SQLite's names ignore ASCII case; a foreign key may spell them otherwise
        by_id: dict[int, list] = {}
        for row in conn.execute(f"PRAGMA foreign_key_list({_quote(name)})"):
            by_id.setdefault(row[0], []).append(row)
        foreign_keys = []
        for fk_id, parts in sorted(by_id.items()):
            parts.sort(key=lambda row: row[1])
            parent = parts[0][2]
            parent_columns = tuple(row[4] for row in parts)
            parent = next((n for n in names if n.lower() == parent.lower()), parent)
            if None in parent_columns and parent in names:  # REFERENCES parent: its primary key
                parent_columns = _primary_key(conn, parent)
            if (name, fk_id) in violated or parent not in names or len(parent_columns) != len(parts):
                continue
            parent_named = {c.lower(): c for c in _column_names(conn, parent)}
            child_columns = tuple(named.get(row[3].lower()) for row in parts)
            parent_columns = tuple(parent_named.get(c.lower()) for c in parent_columns)
            if None not in child_columns + parent_columns:
                foreign_keys.append(_ForeignKey(child_columns, parent, parent_columns))
        unique_sets = tuple(s for s in unique_sets if None not in s)  # an index on an expression has no column name
        tables.append(_Table(name, columns, unique_sets, tuple(foreign_keys)))
    return tables


def _column_names(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(row[1] for row in conn.execute(f"PRAGMA table_info({_quote(table)})"))


def _primary_key(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    info = [row for row in conn.execute(f"PRAGMA table_info({_quote(table)})") if row[5]]
    return tuple(row[1] for row in sorted(info, key=lambda row: row[5]))


def _violated_foreign_keys(conn: sqlite3.Connection, names: list[str]) -> set[tuple[str, int]]:
    """(table, foreign key id) of the keys the original breaks, or that SQLite cannot check (a "mismatch")."""
    violated = set()
    for name in names:
        try:
            violated |= {(name, row[3]) for row in conn.execute(f"PRAGMA foreign_key_check({_quote(name)})")}
        except sqlite3.DatabaseError:  # foreign key mismatch: the parent columns are not a key
            violated |= {(name, row[0]) for row in conn.execute(f"PRAGMA foreign_key_list({_quote(name)})")}
    return violated


def _plan_rows(table: _Table, rows: list[list], rng: random.Random) -> list[_Row]:
    """The table's rows to be: most of the originals, and a few new ones with fresh key values."""
    kept = [_Row(list(row), row) for row in rows if rng.random() >= _DELETE_ROWS]
    if rows and not kept:
        row = rng.choice(rows)
        kept = [_Row(list(row), row)]
    fresh = _FreshValues(table, rows)
    added = []
    for _ in range(rng.randint(1, max(1, round(len(rows) * _ADD_ROWS))) if rows else 0):
        values = fresh.row(list(rng.choice(rows)))
        if values is None:  # a key of a type that cannot be made fresh (a blob, a NULL): no new rows here
            break
        added.append(_Row(values, None))
    return [*kept, *added]


class _FreshValues:
    """Values not yet in a table's key columns, for the rows added to it.

    One column per key is made fresh (a number past the largest, or the copied text numbered), which
    is enough for the key to be new: the only column of a single-column key, a column outside the
    foreign keys for a composite one (its other columns keep the copied row's values).
    """

    def __init__(self, table: _Table, rows: list[list]) -> None:
        references = {c for fk in table.foreign_keys for c in fk.columns}
        chosen: list[str] = []
        for unique in table.unique_sets:
            if not set(unique) & set(chosen):
                chosen.append(next((c for c in unique if c not in references), unique[0]))
        self._positions = {c: table.columns.index(c) for c in chosen}
        self._used = {c: {row[i] for row in rows} for c, i in self._positions.items()}
        self._largest = {c: max((v for v in used if isinstance(v, (int, float))), default=0) for c, used in self._used.items()}
        self._numbering: dict[tuple[str, str], int] = {}

    def row(self, values: list) -> list | None:
        for column, position in self._positions.items():
            value = self._fresh(column, values[position])
            if value is None:
                return None
            values[position] = value
            self._used[column].add(value)
        return values

    def _fresh(self, column: str, like: object) -> object:
        if isinstance(like, (int, float)):  # one past the largest number in the column, of the copied value's type
            self._largest[column] = type(like)(self._largest[column]) + 1
            return self._largest[column]
        if isinstance(like, str):  # the copied row's own text, numbered
            n = self._numbering.get((column, like), 1)
            while (candidate := f"{like} {n + 1}") in self._used[column]:
                n += 1
            self._numbering[(column, like)] = n + 1
            return candidate
        return None


@dataclass(frozen=True)
class _Domain:
    """What a column holds, to redraw its cells from: its values, and for a numeric column its range."""

    values: list
    numeric: bool
    low: float = 0
    high: float = 0
    decimals: int | None = None  # None: integers

    @classmethod
    def of(cls, values: list) -> _Domain:
        present = [v for v in values if v is not None]
        if not present or not all(isinstance(v, (int, float)) for v in present):
            return cls(values, numeric=False)
        floats = [v for v in present if isinstance(v, float)]
        decimals = max(map(_decimals, floats)) if floats else None
        return cls(values, numeric=True, low=min(present), high=max(present), decimals=decimals)

    def draw(self, rng: random.Random) -> object:
        """A value the column holds, or half the time for numbers one between its minimum and maximum."""
        if not self.numeric or rng.random() < 0.5:
            return rng.choice(self.values)
        if self.decimals is None:
            return rng.randint(self.low, self.high)
        return round(rng.uniform(self.low, self.high), self.decimals)


def _redraw_values(table: _Table, rows: list[_Row], originals: list[list], protected: set, rng: random.Random) -> None:
    """Redraw some cells of the columns outside keys, within each column's domain."""
    for position, column in enumerate(table.columns):
        if (table.name, column) in protected or not originals:
            continue
        domain = _Domain.of([row[position] for row in originals])
        for row in rows:
            if rng.random() < _REDRAW_VALUE:
                row.values[position] = domain.draw(rng)


def _decimals(value: float) -> int:
    text = repr(value)
    return 0 if "e" in text or "." not in text else min(len(text.split(".")[1].rstrip("0")), _MAX_DECIMALS)


def _redraw_references(
    table: _Table, rows: list[_Row], schema: dict[str, _Table], planned: dict[str, list[_Row]], rng: random.Random
) -> None:
    """Point some foreign keys (and every one whose parent row is gone) at another parent row."""
    for fk in table.foreign_keys:
        parent_positions = [schema[fk.parent].columns.index(c) for c in fk.parent_columns]
        keys = {tuple(row.values[p] for p in parent_positions) for row in planned[fk.parent]}
        keys = sorted((key for key in keys if None not in key), key=repr)  # sorted: the same seed, the same variant
        present = set(keys)
        positions = [table.columns.index(c) for c in fk.columns]
        for row in rows:
            current = tuple(row.values[p] for p in positions)
            if None in current or not keys:
                continue  # a NULL reference points nowhere by design; with no parent left, the row goes below
            if current not in present or rng.random() < _REDRAW_REFERENCE:
                for p, value in zip(positions, rng.choice(keys)):
                    row.values[p] = value


def _rewrite(conn: sqlite3.Connection, table: _Table, rows: list[_Row]) -> None:
    """Replace the table's rows; a row SQLite refuses (a constraint) goes back to its original, or is dropped."""
    conn.execute(f"DELETE FROM {_quote(table.name)}")
    insert = f"INSERT INTO {_quote(table.name)} ({_columns(table.columns)}) VALUES ({', '.join('?' * len(table.columns))})"
    for row in rows:
        for values in (row.values, row.original):
            if values is None:
                break
            try:
                conn.execute(insert, values)
                break
            except sqlite3.IntegrityError:
                continue


def _delete_orphans(conn: sqlite3.Connection, tables: list[_Table]) -> None:
    """Delete rows whose (kept) foreign key points at no parent row, until none is left (a deletion can orphan others)."""
    deleted = True
    while deleted:
        deleted = False
        for table in tables:
            for fk in table.foreign_keys:
                matches = " AND ".join(f"p.{_quote(pc)} = c.{_quote(cc)}" for cc, pc in zip(fk.columns, fk.parent_columns))
                all_set = " AND ".join(f"c.{_quote(cc)} IS NOT NULL" for cc in fk.columns)
                cursor = conn.execute(
                    f"DELETE FROM {_quote(table.name)} AS c WHERE {all_set} "
                    f"AND NOT EXISTS (SELECT 1 FROM {_quote(fk.parent)} AS p WHERE {matches})"
                )
                deleted |= cursor.rowcount > 0


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(_quote(c) for c in columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

