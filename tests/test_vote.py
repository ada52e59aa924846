"""Execution-guided voting: the group and tie rules, candidates run without the gold, and `eval --vote`."""

from __future__ import annotations

import json
import sqlite3

import pytest

from codelutra.cli import main
from codelutra.errors import UserError
from codelutra.execution.sql import QueryResult
from codelutra.loop.report import accuracy_table, markdown_table
from codelutra.loop.vote import Ballot, cast_ballots, choose, require_votable
from codelutra.tasks import Task
from codelutra.tasks.kinds import TaskSet


def _ok(rows, sql="SELECT x FROM t", logprob=None) -> Ballot:
    return Ballot(sql, logprob, QueryResult("ok", rows, "", 0.0))


def _failed(sql="SELECT nope FROM t", logprob=None) -> Ballot:
    return Ballot(sql, logprob, QueryResult("runtime_error", None, "no such column: nope", 0.0))


def test_the_largest_group_of_equal_results_wins_over_a_more_probable_loner():
    ballots = [_ok([(1,)], logprob=-0.1), _ok([(2,)], logprob=-5.0), _ok([(2,)], logprob=-3.0)]
    vote = choose(ballots)
    assert vote.chosen == 2  # the group [1, 2] wins; inside it, the higher log-prob
    assert vote.group_sizes == [2, 1] and vote.failed == 0


def test_failed_and_empty_candidates_drop_out_however_probable():
    ballots = [_failed(logprob=-0.01), Ballot(None, -0.02, None), _ok([(7,)], logprob=-9.0)]
    vote = choose(ballots)
    assert vote.chosen == 2 and vote.failed == 2 and vote.group_sizes == [1]


def test_equal_means_what_correct_means():
    # Column order, row order (neither query orders) and 1 == 1.0 do not split a group.
    ballots = [
        _ok([(1, "a"), (2, "b")], "SELECT id, name FROM t", -4.0),
        _ok([("b", 2.0), ("a", 1.0)], "SELECT name, id FROM t", -3.0),
        _ok([(3, "c")], "SELECT id, name FROM u", -0.5),
    ]
    assert choose(ballots).group_sizes == [2, 1] and choose(ballots).chosen == 1


def test_row_order_splits_groups_only_when_both_queries_order_their_output():
    up = _ok([(1,), (2,)], "SELECT x FROM t ORDER BY x", -1.0)
    down = _ok([(2,), (1,)], "SELECT x FROM t ORDER BY x DESC", -2.0)
    unordered = _ok([(2,), (1,)], "SELECT x FROM t", -3.0)
    assert choose([up, down]).group_sizes == [1, 1]
    assert choose([up, unordered]).group_sizes == [2]


def test_a_tie_between_groups_goes_to_the_group_with_the_most_probable_member():
    ballots = [_ok([(1,)], logprob=-2.0), _ok([(1,)], logprob=-6.0), _ok([(2,)], logprob=-1.0), _ok([(2,)], logprob=-9.0)]
    vote = choose(ballots)
    assert vote.chosen == 2 and vote.group_sizes == [2, 2]


def test_without_log_probs_ties_go_to_sample_order():
    ballots = [_ok([(1,)]), _ok([(2,)]), _ok([(2,)]), _ok([(1,)])]
    assert choose(ballots).chosen == 0
    assert choose([_ok([(5,)], logprob=None), _ok([(5,)], logprob=-3.0)]).chosen == 1  # a known log-prob beats none


def test_when_nothing_runs_the_most_probable_candidate_answers():
    ballots = [_failed(logprob=-4.0), _failed("SELECT oops", -1.0), Ballot(None, None, None)]
    vote = choose(ballots)
    assert vote.chosen == 1 and vote.group_sizes == [] and vote.failed == 3


def test_candidates_run_in_the_sandbox_once_per_distinct_query(tmp_path):
    db = tmp_path / "t.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    conn.commit()
    conn.close()
    sqls = ["SELECT count(*) FROM t", "select COUNT(*)  from t;", "SELECT min(x) FROM t", "DELETE FROM t", None]
    [ballots] = cast_ballots([(str(db), sqls, [-1.0, -2.0, -0.5, -0.1, -0.2])], timeout_s=5, workers=1)
    assert [b.result.kind if b.result else None for b in ballots] == ["ok", "ok", "ok", "forbidden", None]
    assert ballots[0].result is ballots[1].result  # the same query, run once
    vote = choose(ballots)
    assert vote.group_sizes == [2, 1] and ballots[vote.chosen].sql == "SELECT count(*) FROM t"
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone() == (3,)  # the DELETE never ran


def test_voting_is_refused_on_python_tasks_saying_why():
    with pytest.raises(UserError, match="graded tests"):
        require_votable(TaskSet.of([Task(id="1", question="q", gold="x = 1", kind="python")]), 4)
    require_votable(TaskSet.of([Task(id="1", question="q", gold="x = 1", kind="python")]), 0)  # no voting asked: fine


def test_eval_with_vote_reports_greedy_and_voted_side_by_side(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "out"
    code = main(["eval", "--model", tiny_model_dir, "--tasks", "builtin:heldout", "--limit", "3", "--output", str(out),
                 "--vote", "3", "--set", "eval.max_new_tokens=8"])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["n"] == 3 and 0 <= result["accuracy"] <= 1  # greedy, as before
    voted = result["voted"]
    assert voted["candidates"] == 3 and voted["n"] == 3 and sum(voted["counts"].values()) == 3
    assert voted["accuracy"] == voted["counts"]["correct"] / 3
    samples = [json.loads(line) for line in (out / "vote_samples.jsonl").read_text().splitlines()]
    assert all(len(row["completions"]) == 3 and len(row["logprobs"]) == 3 for row in samples)
    choices = [json.loads(line) for line in (out / "vote_choices.jsonl").read_text().splitlines()]
    for row, choice in zip(samples, choices):
        assert choice["completion"] == row["completions"][choice["chosen"]]
        assert sum(choice["group_sizes"]) + choice["failed"] == 3
    assert len((out / "vote_verdicts.jsonl").read_text().splitlines()) == 3
    printed = capsys.readouterr().out
    assert "greedy" in printed and "voted" in printed
    headers = [column.header for column in accuracy_table([result]).columns]
    assert headers[:4] == ["model", "greedy accuracy", "voted accuracy (3 samples)", "n"]
    table = markdown_table([{**result, "iteration": 1}])
    assert table.splitlines()[0].startswith("| model | greedy accuracy | voted accuracy (3 samples) | n |")


def test_eval_vote_on_python_tasks_is_one_clear_line_and_exit_2(tmp_path, capsys):
    mbpp = tmp_path / "mbpp.jsonl"
    record = {"task_id": 601, "text": "Add one.", "code": "def f(x):\n    return x + 1", "test_list": ["assert f(1) == 2"],
              "test_setup_code": ""}
    mbpp.write_text(json.dumps(record) + "\n")
    assert main(["eval", "--tasks", str(mbpp), "--format", "mbpp", "--vote", "4", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("codelutra: error:")]
    assert len(errors) == 1 and "graded tests" in errors[0] and "Traceback" not in err  # after the load's progress bar
    assert not (tmp_path / "out").exists()
