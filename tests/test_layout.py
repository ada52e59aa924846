"""The run folder's layout: the names every writer and reader shares."""

from __future__ import annotations

from codelutra.layout import RunLayout


def test_paths_of_a_run_and_its_iterations(tmp_path):
    run = RunLayout.of(tmp_path, "demo")
    assert run.root == tmp_path.resolve() / "runs" / "demo"
    assert (run.config.name, run.report.name, run.plot.name) == ("config.yaml", "report.md", "accuracy.png")
    it = run.iteration(2)
    assert it.dir == run.root / "iter_2" and it.samples.name == "samples.jsonl" and it.eval.result == it.dir / "eval.json"
    assert not it.trained
    (it.model).mkdir(parents=True)
    (it.model / "config.json").write_text("{}")
    assert it.trained


def test_iterations_on_disk_in_numeric_order_and_iteration_paths(tmp_path):
    run = RunLayout.of(tmp_path, "demo")
    for k in (10, 0, 2):
        run.iteration(k).dir.mkdir(parents=True)
    (run.root / "iter_x").mkdir()
    assert [it.k for it in run.iterations()] == [0, 2, 10]
    assert RunLayout.of_iteration(run.root / "iter_10") == (run, 10)
    assert RunLayout.of_iteration(run.root / "model") is None
