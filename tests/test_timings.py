"""Stage times are written as they pass: a stage killed outright (SIGKILL) keeps the seconds it spent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from codelutra.loop.refine import stage_timer

REPO = Path(__file__).resolve().parents[1]


def _spend(it_dir: Path, stage: str, seconds: float) -> subprocess.Popen:
    """A child process that runs `stage` for `seconds` under a timer beating every 0.2 s."""
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from codelutra.loop.refine import stage_timer
        with stage_timer(Path({str(it_dir)!r}), {stage!r}, "samples.jsonl", heartbeat_s=0.2):
            time.sleep({seconds})
        """
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def _seconds(it_dir: Path, stage: str) -> float:
    path = it_dir / "timings.json"
    return json.loads(path.read_text()).get(stage, 0.0) if path.exists() else 0.0


def test_a_stage_killed_by_sigkill_keeps_its_seconds_and_the_resumed_run_adds_the_rest(tmp_path):
    (tmp_path / "timings.json").write_text(json.dumps({"sample": 3.0}))  # an earlier attempt's seconds
    child = _spend(tmp_path, "verify", 600)
    deadline = time.monotonic() + 120
    while _seconds(tmp_path, "verify") < 1.0:
        assert child.poll() is None and time.monotonic() < deadline, "the timer never wrote the stage's seconds"
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = _seconds(tmp_path, "verify")
    assert kept >= 1.0
    assert _seconds(tmp_path, "sample") == 3.0  # other stages' seconds untouched

    resumed = _spend(tmp_path, "verify", 0.5)
    assert resumed.wait(timeout=120) == 0
    assert _seconds(tmp_path, "verify") >= kept + 0.5


def test_a_stage_whose_artifact_exists_adds_nothing(tmp_path):
    (tmp_path / "samples.jsonl").write_text("")
    with stage_timer(tmp_path, "sample", "samples.jsonl", heartbeat_s=0.01):
        time.sleep(0.05)
    assert not (tmp_path / "timings.json").exists()


def test_a_stage_that_ends_writes_its_seconds_without_waiting_for_a_beat(tmp_path):
    with stage_timer(tmp_path, "pair", "pairs.jsonl", heartbeat_s=3600):
        time.sleep(0.2)
    assert 0.2 <= _seconds(tmp_path, "pair") < 5
