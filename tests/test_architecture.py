"""The package's shape: no import cycles, small modules, no registry bypassed by a name switch."""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "geopurify"
MAX_LINES = 330


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (module level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:                       # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert "geopurify.lifting.lift" in graph["geopurify.segment.segmenter"]   # the graph sees real imports


def test_modules_stay_small():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_registries_are_never_bypassed_by_name():
    names = "clip-hf|siglip|mask-embed|sam3|precomputed|masks|minilm|openscene|geometric|consensus|mean"
    switch = re.compile(rf"""(==|!=|\bin\b)\s*\(?["']({names})["']""")
    hits = [f"{p.relative_to(SRC)}:{i + 1}: {line.strip()}" for p in SRC.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines()) if switch.search(line)]
    assert not hits, hits


def test_cli_commands_are_thin():
    sizes = {f"{path.name}:{f.name}": f.end_lineno - f.lineno + 1 for path in (SRC / "cli").glob("*.py")
             for f in ast.parse(path.read_text()).body if isinstance(f, ast.FunctionDef) and f.name.startswith("_cmd_")}
    assert len(sizes) >= 6 and max(sizes.values()) <= 25, sizes
