"""The verdicts every sandbox gives, and what each one means.

One vocabulary for SQL and Python candidates, so that evaluation, pairing and reports read the same
kinds whatever the task. The order is the order of report columns; kinds added later come last so that
older verdict tables keep their columns.
"""

from __future__ import annotations

from dataclasses import dataclass

VERDICT_MEANINGS = {
    "correct": "ran, and its result (SQL) or the tests (Python) agree with the gold",
    "wrong_result": "ran, but its result differs from the gold's, or a test failed",
    "runtime_error": "failed while running",
    "syntax_error": "does not parse",
    "timeout": "ran past the time limit",
    "no_code": "the answer holds no code to run",
    "memory": "ran out of its memory limit",
    "forbidden": "tried something the sandbox refuses (a write, the network, a process, ...)",
    "truncated": "the answer was cut at the token budget before its code block closed",
}
VERDICT_KINDS = tuple(VERDICT_MEANINGS)

@dataclass(frozen=True)
class Verdict:
    kind: str  # one of VERDICT_KINDS
    detail: str  # one short line: the error, or how the result differs; "" when correct
    seconds: float  # wall time the candidate took to execute (0.0 when not run)


DETAIL_CHARS = 200  # a verdict's detail is at most this long


def one_line(text: str) -> str:
    """A verdict's detail: whitespace collapsed to one line, at most DETAIL_CHARS characters."""
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


NO_CODE = Verdict("no_code", "no code to run", 0.0)
