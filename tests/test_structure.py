"""The package's shape: imports point down the layers, no import loops, no file too long to read, every module importable on its own."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "codelutra"
MAX_LINES = 500
DATA_TABLES = {"codelutra/tasks/builtin/domains.py", "codelutra/tasks/builtin/questions.py"}  # the built-in data, not logic
# The package's top-level modules and folders, lowest first: each may import its own layer and those below it only.
LAYERS = (
    ("errors", "artifacts", "console", "layout", "candidates"),  # what every layer may use
    ("models",),  # where a model comes from
    ("execution",),  # the sandbox: runs candidates, knows no configuration
    ("config",),  # the validated settings (its checks ask execution)
    ("generation",),  # sampling backends
    ("tasks",),  # problems and their kinds (prompts, extraction, judging)
    ("training",),  # pairs and the trainer
    ("loop",),  # the stages, the refinement loop, evaluation
    ("serving",),  # using the result
    ("cli",),  # the command line
)


def _modules() -> dict[str, Path]:
    return {
        ".".join(("codelutra", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that `name` imports at its top level or inside functions."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def test_no_import_loops():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    # A package's __init__ importing its own submodules is not a loop through them.
    graph = {n: {t for t in ts if not (modules[n].name == "__init__.py" and t.startswith(n + "."))} for n, ts in graph.items()}
    loops, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                loops.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not loops, "import loops: " + "; ".join(loops)


def _layer(module: str) -> int:
    """The layer of a package module ("codelutra.loop.refine": loop's); the package's own __init__ is lowest."""
    top = module.split(".")[1] if "." in module else None
    if top is None:
        return 0
    found = [i for i, layer in enumerate(LAYERS) if top in layer]
    assert found, f"{module}: codelutra/{top} is in no layer of LAYERS; place it there"
    return found[0]


def test_imports_point_down_the_layers():
    modules = _modules()
    upward = [
        f"{name} -> {target}"
        for name, path in modules.items()
        for target in sorted(_imports(name, path, set(modules)))
        if _layer(target) > _layer(name)
    ]
    assert not upward, "imports of a higher layer (see LAYERS): " + "; ".join(upward)


def test_the_layer_test_sees_an_upward_import(tmp_path):
    """An import of training from execution, at the top or inside a function, is one the test above reports."""
    module = tmp_path / "batch.py"
    module.write_text("def f():\n    from codelutra.training.pairs import build_pairs\n", encoding="utf-8")
    [target] = _imports("codelutra.execution.batch", module, set(_modules()))
    assert _layer(target) > _layer("codelutra.execution.batch")


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_module_imports_alone(name):
    importlib.import_module(name)


def test_no_file_over_the_limit():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    long = {
        name: n
        for p in files
        if (name := p.relative_to(REPO).as_posix()) not in DATA_TABLES
        and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"
