"""The package's shape: no import cycles, a thin CLI, small modules, no CLI called from inside the library."""

from __future__ import annotations

import ast
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rtune"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str], name: str | None = None) -> set[str]:
    """Every rtune module the module `name` (at `path`) imports, at any depth of the file (function-level
    imports count)."""
    found = set()
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
    return {name for name in found if name in known}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                result.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return result


def test_no_module_of_the_package_takes_part_in_an_import_cycle():
    found = modules()
    graph = {name: imports_of(path, set(found)) - {name} for name, path in found.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_reader_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("import json\n\ndef f():\n    from rtune.x import y\n    from . import z\n    from .x import w\n")
    assert imports_of(source, {"rtune.x", "rtune.x.y", "rtune.z"}, "rtune.probe") == {"rtune.x.y", "rtune.z", "rtune.x"}


def logical_lines(path: Path) -> int:
    """Statements, as Python's tokenizer ends them: what the formatter's line wrapping does not change."""
    with path.open("rb") as source:
        return sum(token.type == tokenize.NEWLINE for token in tokenize.tokenize(source.readline))


def test_logical_lines_ignore_wrapping(tmp_path):
    (tmp_path / "a.py").write_text("x = f(1, 2)\ny = 3\n")
    (tmp_path / "b.py").write_text("x = f(\n    1,\n    2,\n)\ny = 3\n")
    assert logical_lines(tmp_path / "a.py") == logical_lines(tmp_path / "b.py") == 2


@pytest.mark.parametrize("name, path", sorted(modules().items()))
def test_modules_stay_small(name, path):
    limit = 45 if name.startswith("rtune.cli.") and name not in ("rtune.cli", "rtune.cli.options") else 250
    assert logical_lines(path) <= limit, f"{name} has {logical_lines(path)} statements (at most {limit})"


def test_the_library_never_calls_the_cli():
    offenders = [
        name
        for name, path in modules().items()
        if not name.startswith("rtune.cli")
        and name != "rtune.__main__"
        and any(found.startswith("rtune.cli") for found in imports_of(path, set(modules())))
    ]
    assert offenders == []


def test_ruff_passes_on_the_whole_tree():
    """Lint and formatting are part of the suite, so a change that breaks either fails CI."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    for command in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "src", "tests", "benchmarks"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
