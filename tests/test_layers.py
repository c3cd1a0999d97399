"""The house rules, checked on the source: imports only run downward through the layers
(no loops, no upward arrow), and modules and functions stay small enough to read."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top. A package may import its own modules and any package below it, never one
# above: the write side (indexer) builds on the read side's index primitives (search), the
# queue (workers) drives the pipeline, and the API and CLI (api) sit on top of everything.
# The Python SDK (client) is at the bottom: it imports nothing of the server, and the CLI
# reaches a server through it.
LAYERS = ["client", "core", "store", "model", "search", "indexer", "workers", "api"]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# A longer module or function carries this comment (module: in its first 5 lines; function:
# on the line above its `def` or first decorator), followed by a one-line reason.
EXEMPT = "# long:"


def _modules():
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, path


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every chronoscope module a file imports, at top level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in LAYERS}


def test_no_upward_import():
    rank = {pkg: i for i, pkg in enumerate(LAYERS)}
    bad = []
    for pkg, path in _modules():
        for mod in _imports(path):
            if rank[mod.split(".")[0]] > rank[pkg]:
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "upward imports:\n" + "\n".join(sorted(set(bad)))


def test_no_import_cycle():
    names = {_module_name(p): p for _, p in _modules()}
    graph = {}
    for name, path in names.items():
        # `from a.b import c` names a.b.c, a module or a symbol: keep those that are modules.
        graph[name] = {m if m in names else m.rsplit(".", 1)[0] for m in _imports(path)}
        graph[name] = {m for m in graph[name] if m in names and m != name}
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _exempt(lines: list[str], line_no: int) -> bool:
    return line_no >= 2 and lines[line_no - 2].strip().startswith(EXEMPT)


@pytest.mark.parametrize("pkg", LAYERS)
def test_sizes(pkg):
    too_big = []
    for _, path in (m for m in _modules() if m[0] == pkg):
        src = path.read_text()
        lines = src.splitlines()
        if len(lines) > MAX_MODULE_LINES and not any(
                ln.strip().startswith(EXEMPT) for ln in lines[:5]):
            too_big.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and not _exempt(lines, first):
                    too_big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not too_big, "over the size limits:\n" + "\n".join(too_big)
