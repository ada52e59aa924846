"""One VerifyConfig reaches every place that runs code: the loaders' gold checks and `codelutra verify`."""

from __future__ import annotations

import json
import sqlite3

from codelutra.cli import main
from codelutra.config import VerifyConfig
from codelutra.execution.limits import DEFAULT_TIMEOUT_S
from codelutra.tasks.sql import load_sql_tasks

# A query that counts to ten million: several seconds in SQLite, far past a 0.2 s limit.
SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) SELECT count(*) FROM c"


def test_the_sql_gold_check_runs_under_the_configured_time_limit(tmp_path):
    sqlite3.connect(tmp_path / "db.sqlite").close()
    rows = [{"id": "fast", "question": "q", "gold_sql": "SELECT 1", "db_path": "db.sqlite"},
            {"id": "slow", "question": "q", "gold_sql": SLOW, "db_path": "db.sqlite"}]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks, skipped = load_sql_tasks(tmp_path / "tasks.jsonl", verify=VerifyConfig(timeout_s=0.2))
    assert [t.id for t in tasks] == ["fast"]
    assert [s.id for s in skipped] == ["slow"] and "0.2 s time limit" in skipped[0].reason


def test_verify_command_defaults_to_the_configs_time_limit(tmp_path, capsys):
    db = tmp_path / "db.sqlite"
    sqlite3.connect(db).close()
    line = {"id": 1, "task": "sql", "db": str(db), "gold": "SELECT 1", "candidate": SLOW}
    (tmp_path / "c.jsonl").write_text(json.dumps(line) + "\n")
    assert main(["verify", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "v.jsonl"), "--timeout", "0.2"]) == 0
    [row] = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert row["verdict"] == "timeout" and "0.2 s" in row["detail"]
    assert VerifyConfig().timeout_s == DEFAULT_TIMEOUT_S
