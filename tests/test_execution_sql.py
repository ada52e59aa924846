"""Tests of the SQL sandbox and verifier, against real SQLite databases built in a temporary folder."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time
from collections import Counter

import pytest

from codelutra.execution import sql
from codelutra.execution.sql import QueryResult, SqlCheck, run_queries, verify_sql
from codelutra.execution.sql_match import gold_is_ordered, results_match
from codelutra.execution.verdict import VERDICT_KINDS, Verdict

# A query that spends many seconds inside one C call (a naive substring search), where SQLite's
# progress handler never runs: only the wall-clock kill of the worker stops it.
STUCK_IN_C = "SELECT instr(printf('%.*c', 2000000, 'a'), printf('%.*c', 1000000, 'a') || 'b')"
ENDLESS_CTE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
HUGE_CROSS_JOIN = "SELECT count(*) FROM numbers AS a, numbers AS b, numbers AS c"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sandbox") / "concert_singer.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER, net_worth REAL);
        INSERT INTO singer VALUES (1, 'Ann', 'France', 30, 1.5), (2, 'Bob', 'USA', 25, 2.25),
                                  (3, 'Cid', 'France', 41, 0.1), (4, 'Dee', 'UK', 25, NULL);
        CREATE TABLE numbers (n INTEGER);
        WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 2000)
            INSERT INTO numbers SELECT n FROM c;
        """
    )
    conn.commit()
    conn.close()
    return str(path)


def file_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Verdicts: one verify_sql run over many cases, one test per case

NAMES = "SELECT name FROM singer"
OVER_26 = "SELECT name FROM singer WHERE age > 26"  # Ann and Cid
NET_WORTH = "SELECT sum(net_worth) FROM singer"

# name: (gold, candidate, expected kind, text the detail must contain)
CASES = {
    "identical": (OVER_26, OVER_26, "correct", ""),
    "whitespace_and_semicolons": (OVER_26, f"  {OVER_26} ;; \n", "correct", ""),
    "columns_swapped": ("SELECT name, age FROM singer", "SELECT age, name FROM singer", "correct", ""),
    "rows_reordered_gold_unordered": (NAMES, f"{NAMES} ORDER BY name DESC", "correct", ""),
    "float_tolerance": (NET_WORTH, "SELECT sum(net_worth) * (1 + 1e-9) FROM singer", "correct", ""),
    "int_equals_float": ("SELECT count(*) FROM singer", "SELECT count(*) * 1.0 FROM singer", "correct", ""),
    "equivalent_condition": (OVER_26, "SELECT name FROM singer WHERE age >= 27", "correct", ""),
    "rows_reordered_gold_ordered": (f"{NAMES} ORDER BY age, name", f"{NAMES} ORDER BY name", "wrong_result", "order"),
    "wrong_row_count": (OVER_26, NAMES, "wrong_result", "expected 2 rows, got 4"),
    "wrong_column_count": (NAMES, "SELECT name, age FROM singer", "wrong_result", "expected 1 columns, got 2"),
    "wrong_values": (f"{NAMES} WHERE country = 'UK'", f"{NAMES} WHERE country = 'USA'", "wrong_result", "differs"),
    "float_too_far": (NET_WORTH, "SELECT sum(net_worth) * 1.001 FROM singer", "wrong_result", "differs from gold"),
    "syntax_error": (NAMES, "SELEC name FROM singer", "syntax_error", "syntax error"),
    "incomplete_input": (NAMES, "SELECT name FROM", "syntax_error", "incomplete input"),
    "unrecognized_token": (NAMES, "SELECT 'abc FROM singer", "syntax_error", "unrecognized token"),
    "no_such_column": (NAMES, "SELECT nme FROM singer", "runtime_error", "no such column"),
    "no_such_table": (NAMES, "SELECT name FROM singers", "runtime_error", "no such table"),
    "several_statements": (NAMES, f"{NAMES}; SELECT 1", "runtime_error", "one statement"),
    "no_sql_none": (NAMES, None, "no_code", ""),
    "no_sql_empty": (NAMES, "", "no_code", ""),
    "no_sql_only_semicolon": (NAMES, " ;\n", "no_code", ""),
    "gold_fails": ("SELECT nope FROM singer", NAMES, "runtime_error", "gold query failed:"),
}


@pytest.fixture(scope="module")
def verdicts(db) -> dict[str, Verdict]:
    checks = [SqlCheck(db, gold, candidate) for gold, candidate, _, _ in CASES.values()]
    return dict(zip(CASES, verify_sql(checks, workers=2)))


@pytest.mark.parametrize("case", CASES)
def test_verdict(verdicts, case):
    _, candidate, kind, detail_part = CASES[case]
    verdict = verdicts[case]
    assert verdict.kind == kind, verdict
    assert detail_part in verdict.detail
    assert "\n" not in verdict.detail and len(verdict.detail) < 200
    if kind == "correct":
        assert verdict.detail == ""
    if kind == "no_code" or case == "gold_fails":
        assert verdict.seconds == 0.0
    else:
        assert verdict.seconds > 0.0


def test_verdict_kinds_are_the_documented_ones(verdicts):
    assert {v.kind for v in verdicts.values()} == set(VERDICT_KINDS) - {"timeout", "memory", "forbidden", "truncated"}


# ---------------------------------------------------------------------------------------------
# Time limits


def test_runaway_queries_time_out(db):
    started = time.monotonic()
    checks = [SqlCheck(db, "SELECT 1", candidate) for candidate in (ENDLESS_CTE, HUGE_CROSS_JOIN, STUCK_IN_C)]
    verdicts = verify_sql(checks, timeout_s=0.5, workers=3)
    assert [v.kind for v in verdicts] == ["timeout"] * 3, verdicts
    assert "worker killed" not in verdicts[0].detail + verdicts[1].detail  # SQLite's progress handler stopped these
    assert "worker killed" in verdicts[2].detail  # ... but could not stop that one
    assert all(v.seconds >= 0.5 for v in verdicts)
    assert time.monotonic() - started < 15


def test_pool_goes_on_after_a_killed_worker(db):
    queries = [(db, STUCK_IN_C), (db, "SELECT count(*) FROM singer"), (db, STUCK_IN_C), (db, "SELECT 2")]
    results = run_queries(queries, timeout_s=0.3, workers=1)
    assert [r.kind for r in results] == ["timeout", "ok", "timeout", "ok"]
    assert results[1].rows == [(4,)] and results[3].rows == [(2,)]


# ---------------------------------------------------------------------------------------------
# Read-only

FORBIDDEN = [
    "DROP TABLE singer",
    "UPDATE singer SET age = 99",
    "INSERT INTO singer (name) VALUES ('Eve')",
    "DELETE FROM singer",
    "WITH doomed AS (SELECT 1) DELETE FROM singer",
    "CREATE TABLE extra (x)",
    "CREATE TEMP TABLE scratch (x)",
    "ALTER TABLE singer ADD COLUMN y",
    "ATTACH DATABASE '{folder}/attached.sqlite' AS other",
    "VACUUM INTO '{folder}/copy.sqlite'",
    "PRAGMA writable_schema = 1",
    "PRAGMA journal_mode = WAL",
    "BEGIN",
    "SELECT load_extension('x')",
]


def test_writes_and_state_changes_are_refused(db):
    folder = os.path.dirname(db)
    files_before = sorted(os.listdir(folder))
    hash_before = file_hash(db)
    checks = [SqlCheck(db, "SELECT 1", candidate.format(folder=folder)) for candidate in FORBIDDEN]
    verdicts = verify_sql(checks, workers=2)
    for candidate, verdict in zip(FORBIDDEN, verdicts):
        assert verdict.kind == "forbidden", (candidate, verdict)
        assert verdict.detail.startswith("forbidden:"), (candidate, verdict)
    assert "load_extension" in verdicts[-1].detail
    assert file_hash(db) == hash_before
    assert sorted(os.listdir(folder)) == files_before  # nothing attached, copied or journalled
    assert run_queries([(db, "SELECT count(*) FROM singer")])[0].rows == [(4,)]


def test_read_only_pragmas_can_be_read_as_tables(db):
    """`pragma_table_info('t')` and its kin only read the schema: allowed, also on a fresh connection
    (its first use once looked to the authorizer like an UPDATE of sqlite_master)."""
    queries = [
        (db, "SELECT name, pk FROM pragma_table_info('singer') ORDER BY cid"),
        (db, "SELECT count(*) FROM pragma_foreign_key_list('singer')"),
        (db, "SELECT count(*) FROM pragma_index_list('singer')"),
        (db, "PRAGMA table_info(singer)"),
        (db, "SELECT * FROM pragma_journal_mode"),  # a pragma that can also set: still refused
        (db, "PRAGMA query_only = OFF"),
    ]
    results = run_queries(queries, workers=1)
    assert [r.kind for r in results] == ["ok", "ok", "ok", "ok", "forbidden", "forbidden"], results
    assert results[0].rows[0] == ("singer_id", 1)
    assert "table-valued pragma (only table_info" in results[4].error and "sqlite_master" not in results[4].error


def test_a_kept_connection_carries_nothing_from_one_query_to_the_next(db):
    # One worker keeps the database open: what one query tries must not change what the next sees.
    count = (db, "SELECT count(*) FROM singer")
    queries = [
        (db, "PRAGMA query_only = OFF"), (db, "DELETE FROM singer"), count,
        (db, "CREATE TEMP TABLE singer (name)"), count,
        (db, ENDLESS_CTE), count,
        (db, "SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)"), count,
    ]
    results = run_queries(queries, timeout_s=0.5, workers=1)
    kinds = ["forbidden", "forbidden", "ok", "forbidden", "ok", "timeout", "ok", "runtime_error", "ok"]
    assert [r.kind for r in results] == kinds  # the last error: a result too large, left half-read
    assert all(r.rows == [(4,)] for r in results if r.kind == "ok")


# ---------------------------------------------------------------------------------------------
# Resources and worker failures


def test_result_too_large(db):
    many_rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x <= 100000) SELECT x FROM c"
    [result] = run_queries([(db, many_rows)])
    assert result.kind == "runtime_error" and "result too large" in result.error


def test_memory_limit(db, monkeypatch):
    monkeypatch.setattr(sql, "_WORKER_MEMORY_BYTES", 100 * 1024**2)
    results = run_queries([(db, "SELECT length(zeroblob(300000000) || x'00')"), (db, "SELECT 1")], workers=1)
    assert results[0].kind == "runtime_error" and "memory" in results[0].error
    assert results[1].rows == [(1,)]  # the same worker goes on


def test_dead_worker_gives_runtime_error_and_is_replaced(db, monkeypatch):
    started_pids = []
    start_query = sql._Worker.start_query

    def recording_start_query(self, index, db_path, query, timeout_s):
        start_query(self, index, db_path, query, timeout_s)
        started_pids.append(self.process.pid)

    monkeypatch.setattr(sql._Worker, "start_query", recording_start_query)

    def kill_first_worker():
        while not started_pids:
            time.sleep(0.01)
        time.sleep(0.3)  # let it get into the query
        os.kill(started_pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    results = run_queries([(db, STUCK_IN_C), (db, "SELECT 7")], timeout_s=30, workers=1)
    killer.join()
    assert results[0].kind == "runtime_error" and "worker died" in results[0].error
    assert results[1] == QueryResult("ok", [(7,)], "", results[1].seconds)
    assert len(set(started_pids)) == 2


# ---------------------------------------------------------------------------------------------
# run_queries and re-use of results


def test_run_queries_keeps_order_and_kinds(db, tmp_path):
    queries = [
        (db, "SELECT name FROM singer WHERE singer_id = 2;"),
        (db, "SELEC 1"),
        (db, "SELECT nme FROM singer"),
        (str(tmp_path / "missing.sqlite"), "SELECT 1"),
        (db, "SELECT 1.5, NULL, x'00ff', 'é'"),
    ]
    results = run_queries(queries, workers=2)
    assert [r.kind for r in results] == ["ok", "syntax_error", "runtime_error", "runtime_error", "ok"]
    assert results[0].rows == [("Bob",)]
    assert results[4].rows == [(1.5, None, b"\x00\xff", "é")]
    assert "unable to open" in results[3].error
    assert not (tmp_path / "missing.sqlite").exists()  # read-only mode never creates a database
    assert run_queries([(db, " ; ")])[0] == QueryResult("runtime_error", None, "empty query", 0.0)
    assert run_queries([]) == []


def test_each_distinct_query_runs_once(db, monkeypatch):
    submitted = []
    run = sql._SandboxPool.run

    def recording_run(self, queries, timeout_s):
        submitted.extend(query for _, query in queries)
        return run(self, queries, timeout_s)

    monkeypatch.setattr(sql._SandboxPool, "run", recording_run)
    same_as_over_26 = "SELECT name FROM singer WHERE age >= 27"
    count = "SELECT count(*) FROM singer"
    # Other spacing, keyword case or a trailing ';' is the same program: run once, in its first form.
    same_again = "select  name\nfrom singer where age >= 27 ;"
    candidates = [same_as_over_26, NAMES, f"{same_as_over_26};", OVER_26, same_again, OVER_26.lower()]
    checks = [SqlCheck(db, OVER_26, c) for c in candidates] + [SqlCheck(db, count, NAMES), SqlCheck(db, count, None)]
    verdicts = verify_sql(checks, workers=2)
    assert [v.kind for v in verdicts] == ["correct", "wrong_result", "correct", "correct", "correct", "correct", "wrong_result", "no_code"]
    assert Counter(submitted) == {OVER_26: 1, count: 1, same_as_over_26: 1, NAMES: 1}


def test_many_checks_and_progress(db):
    # Candidate k is "age >= m + 1" (right) for odd k and "age >= m" for even k: wrong when a singer is m.
    golds = [f"{NAMES} WHERE age > {k % 45}" for k in range(200)]
    candidates = [f"{NAMES} WHERE age >= {k % 45 + k % 2}" for k in range(200)]
    checks = [SqlCheck(db, gold, candidate) for gold, candidate in zip(golds, candidates)]
    reported = []
    verdicts = verify_sql(checks, workers=2, progress=reported.append)
    assert sum(reported) == 200
    expected = ["wrong_result" if k % 2 == 0 and k % 45 in (25, 30, 41) else "correct" for k in range(200)]
    assert [v.kind for v in verdicts] == expected


# ---------------------------------------------------------------------------------------------
# Comparison


@pytest.mark.parametrize(
    "gold, candidate, ordered, expected",
    [
        ([], [], False, True),
        ([(1,)], [], False, False),
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], False, True),
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True, True),
        ([(1,), (2,)], [(2,), (1,)], False, True),
        ([(1,), (2,)], [(2,), (1,)], True, False),
        ([(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False),  # multisets, not sets
        ([(1, 2), (2, 1)], [(1, 1), (2, 2)], False, False),  # same column values, different rows
        ([(1, 1)], [(1, 2)], False, False),  # one candidate column cannot stand for two gold columns
        ([(1, 2, 3)], [(3, 1, 2)], True, True),
        ([(1, 2)], [(1,)], False, False),
        ([(1,)], [(1.0,)], False, True),
        ([(0.1 + 0.2,)], [(0.3,)], True, True),
        ([(1.0,)], [(1.001,)], False, False),
        ([(1234567,)], [(1234567.0000001,)], False, True),
        ([(1234567,)], [(1234568,)], False, False),
        ([(None,)], [(None,)], False, True),
        ([(None,)], [(0,)], False, False),
        ([("1",)], [(1,)], False, False),
        ([(b"\x00",)], [(b"\x00",)], False, True),
    ],
)
def test_results_match(gold, candidate, ordered, expected):
    assert results_match(gold, candidate, ordered=ordered) is expected


def test_results_match_gives_up_on_too_many_column_orders():
    # Every column holds {0, 1}, so all 10! column orders pass the pruning; none can match.
    gold = [(0,) * 5 + (1,) * 5, (1,) * 5 + (0,) * 5]
    candidate = [(0,) * 6 + (1,) * 4, (1,) * 6 + (0,) * 4]
    started = time.monotonic()
    assert results_match(gold, candidate, ordered=False) is False
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "gold, expected",
    [
        ("SELECT name FROM singer ORDER BY age", True),
        ("SELECT name FROM singer ORDER BY age DESC LIMIT 3", True),
        ("select name from singer order by age", True),
        ("SELECT name FROM singer", False),
        ("SELECT name FROM (SELECT name, age FROM singer ORDER BY age LIMIT 3)", False),
        ("SELECT name FROM singer WHERE age IN (SELECT age FROM singer ORDER BY age LIMIT 1)", False),
        ("WITH young AS (SELECT name FROM singer ORDER BY age) SELECT name FROM young", False),
        ("SELECT name FROM singer UNION SELECT country FROM singer ORDER BY name", True),
        ("SELECT name FROM singer UNION SELECT country FROM singer", False),
        ("SELECT name FROM singer EXCEPT SELECT name FROM singer WHERE age > 30", False),
        ("SELEC name FROM singer ORDER BY age", True),  # sqlglot cannot parse it: regex fallback
        ("SELECT name FROM (SELECT name FROM singer ORDER BY age) WHERE", False),  # likewise
    ],
)
def test_gold_is_ordered(gold, expected):
    assert gold_is_ordered(gold) is expected
