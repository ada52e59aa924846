"""Python extraction from what small models write: fences, prose, several blocks, cut-off text, DS-1000 markers."""

import pytest

from codelutra.generation.extract import extract_python
from codelutra.tasks.prompts import format_python_answer

FUNCTION = "def add(a, b):\n    return a + b"

CASES = [
    ("fenced", f"```python\n{FUNCTION}\n```", FUNCTION),
    ("prose around a fence", f"Here is the function:\n\n```python\n{FUNCTION}\n```\n\nIt adds two numbers.", FUNCTION),
    ("py and Python3 fence languages", f"```py\n{FUNCTION}\n```\n```Python3\nx = 1\n```", FUNCTION),
    ("unterminated fence (generation cut off)", "```python\ndef add(a, b):\n    return a +", "def add(a, b):\n    return a +"),
    ("the first of several python fences", f"```python\n{FUNCTION}\n```\nUsage:\n```python\nprint(add(1, 2))\n```", FUNCTION),
    ("an empty python fence is passed over", f"```python\n```\nOops, here:\n```python\n{FUNCTION}\n```", FUNCTION),
    ("a python fence wins over an earlier bare one", f"```\n$ run it\n```\n```python\n{FUNCTION}\n```", FUNCTION),
    ("bare fence", f"```\n{FUNCTION}\n```", FUNCTION),
    ("other languages are passed over", f"```bash\npip install x\n```\n```\n{FUNCTION}\n```", FUNCTION),
    ("blank lines around the code go", f"```python\n\n\n{FUNCTION}\n\n```", FUNCTION),
    ("indentation of a function body is kept", "```python\n    return sum(a)\n```", "    return sum(a)"),
    ("DS-1000's closing tag ends the code", "```python\nresult = a.sum()\n</code>\nEND SOLUTION\n```", "result = a.sum()"),
    ("DS-1000's END SOLUTION ends the code", "```python\nresult = a.sum()\n# END SOLUTION\nprint(result)\n```", "result = a.sum()"),
    ("unfenced code", FUNCTION, FUNCTION),
    ("unfenced, prose before and after", f"Sure! Here it is:\n{FUNCTION}\n\nThis returns the sum.", FUNCTION),
    ("unfenced assignment", "The answer:\nresult = df.sum()\nDone, that is all.", "result = df.sum()"),
    ("unfenced import and function", f"import math\n{FUNCTION}", f"import math\n{FUNCTION}"),
]


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in CASES], ids=[name for name, _, _ in CASES])
def test_extracts_the_code(text, expected):
    assert extract_python(text) == expected


NO_CODE = [
    ("empty", ""),
    ("prose only", "I am not sure how to write this function."),
    ("a bare expression is not taken for code", "Hello"),
    ("a sentence with an equals sign", "The result = the sum of both numbers, as expected."),
    ("empty python fence, cut off", "```python\n"),
    ("code only in another language", "```bash\nx=1\n```"),
]


@pytest.mark.parametrize("text", [t for _, t in NO_CODE], ids=[name for name, _ in NO_CODE])
def test_no_code_gives_none(text):
    assert extract_python(text) is None


@pytest.mark.parametrize("gold", [FUNCTION, "    df = df.copy()\n\n    return df", "import re\nx = re.sub('`', '', s)"])
def test_gold_answer_is_what_extraction_reads_back(gold):
    answer = format_python_answer(gold)
    assert answer.startswith("```python\n") and answer.endswith("\n```")
    assert extract_python(answer) == gold
