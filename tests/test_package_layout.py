"""The package is laid out as the pipeline: rooms that import only the rooms below them.

Read from the source (AST), never by importing: a circle or an upward import is a failure
here, not a surprise at run time. The rooms, lowest first, are ROOMS; `stages`, `chain`,
`cli` and `kernel` sit on top. A package-internal import inside a function must say why on its
own line (a comment), as the few that break a real circle at run time do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "patarm_kit"
ROOMS = ("config", "runs", "data", "judging", "training", "evaluation", "report")
TOP = len(ROOMS)  # stages, chain, cli, kernel and the package itself
LARGEST_MODULE = 450  # lines


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> int:
    parts = module.split(".")
    return ROOMS.index(parts[1]) if len(parts) > 1 and parts[1] in ROOMS else TOP


def internal_imports(path: Path) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, inside a function, the source line) for each package-internal import."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    in_function = {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for sub in ast.walk(node) if sub is not node}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "patarm_kit":
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").is_file() or \
                    (PACKAGE.parent / Path(*candidate.split(".")) / "__init__.py").is_file()
                text = "\n".join(lines[node.lineno - 1:node.end_lineno])  # a reason may sit on any line of the import
                found.append((candidate if is_module else target, node.lineno, id(node) in in_function, text))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "patarm_kit":
                    found.append((alias.name, node.lineno, id(node) in in_function, lines[node.lineno - 1]))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {module_name(p): internal_imports(p) for p in MODULES}


def test_the_rooms_are_the_package_folders() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(ROOMS)
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE:
            continue
        stated = next((ast.literal_eval(node.value) for node in ast.parse(init.read_text()).body
                       if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__all__"), None)
        modules = {p.stem for p in init.parent.glob("*.py") if p.name != "__init__.py"} | \
                  {p.name for p in init.parent.iterdir() if (p / "__init__.py").is_file()}
        assert stated is not None, f"{init.relative_to(PACKAGE)} states no __all__"
        assert modules <= set(stated), f"{init.relative_to(PACKAGE)}: __all__ leaves out {sorted(modules - set(stated))}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_room_and_the_rooms_below(module: str) -> None:
    upward = [f"line {line}: {target}" for target, line, _, _ in GRAPH[module]
              if room_of(target) > room_of(module)]
    assert not upward, f"{module} imports a higher room: {upward}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_an_import_inside_a_function_says_why(module: str) -> None:
    silent = [f"line {line}: {text.strip()}" for _, line, inside, text in GRAPH[module] if inside and "#" not in text]
    assert not silent, f"{module}: package-internal imports inside functions without a stated reason: {silent}"


def test_no_module_imports_itself_round_a_circle() -> None:
    edges = {m: {t for t, *_ in imports if t in GRAPH and t != m} for m, imports in GRAPH.items()}
    # a package's __init__ is imported on the way to its modules: count the edge to the package itself
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_no_module_is_longer_than_the_limit() -> None:
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > LARGEST_MODULE}
    assert not long, f"modules over {LARGEST_MODULE} lines: {long}"


def test_no_stage_calls_another_stage_back() -> None:
    """Each library stage in stages.py does its own work; the chain (and the notebooks) call them in order."""
    tree = ast.parse((PACKAGE / "stages.py").read_text())
    stage_functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}
    calls = {(node.name, call.func.id) for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in stage_functions
             for call in ast.walk(node) if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)}
    helpers = {"enabled"}  # the rule the stages ask (RunConfig.why_off), not a stage
    assert {(caller, callee) for caller, callee in calls if callee in stage_functions - helpers} == set()
