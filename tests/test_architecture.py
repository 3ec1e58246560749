"""The tree's shape, read from the source with ast: imports go down the rooms only, no cycles, SQL only in the store.

Rooms, lowest first: core (pure) < config, clock < store < engine < web < server (wires them together) < cli.
A module may import its own room and the rooms below it, never one above. Inside web, the modules that own
routes (ENDPOINTS) do not import one another, and the helpers they share import none of them; only app.py
gathers them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "heartwatch"

RANKS = {"heartwatch": 0, "core": 0, "config": 1, "clock": 1, "store": 2, "engine": 3, "web": 4, "server": 5,
         "cli": 6, "__main__": 7}
ENDPOINTS = {"heartwatch.web.api", "heartwatch.web.api_write", "heartwatch.web.openapi", "heartwatch.web.pages",
             "heartwatch.web.login", "heartwatch.web.metrics", "heartwatch.web.ping_view", "heartwatch.web.manage",
             "heartwatch.web.hc_api"}

#: The one room where SQL may be written.
SQL_ROOMS = {"store"}
#: A statement's first keyword followed by more (so `methods=["DELETE"]` is not SQL).
SQL_STRING = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|PRAGMA|CREATE|DROP|ALTER|BEGIN|COMMIT|ROLLBACK|WITH)\s+\S")
SQL_CALLS = {"execute", "executemany", "executescript", "fetchall"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


#: "heartwatch.cli.jobs:run_cmd": a module named for importlib (cli/main.py's lazily loaded commands).
LAZY_MODULE = re.compile(r"^(heartwatch(?:\.\w+)+):\w+$")


def imports(name: str, tree: ast.Module) -> Iterator[tuple[str, int]]:
    """(heartwatch module imported, line), lazy imports inside functions and by importlib included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY_MODULE.match(node.value):
            yield node.value.split(":")[0], node.lineno
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("heartwatch"):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("heartwatch"):
            for alias in node.names:
                # `from heartwatch.web import api` imports the module heartwatch.web.api
                yield f"{node.module}.{alias.name}", node.lineno


def resolve(target: str, known: set[str]) -> str:
    """The module an import names: itself, or for `from m import name`, m."""
    while target not in known:
        target = target.rsplit(".", 1)[0]
    return target


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def graph() -> dict[str, set[str]]:
    trees = modules()
    known = set(trees)
    return {name: {resolve(t, known) for t, _ in imports(name, tree)} - {name} for name, tree in trees.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in edges.items():
        for target in targets:
            if target == "heartwatch":
                continue  # the package itself: __version__
            if RANKS[room(target)] > RANKS[room(source)]:
                bad.append(f"{source} imports {target} ({room(source)} is below {room(target)})")
            elif source in ENDPOINTS and target in ENDPOINTS:
                bad.append(f"{source} imports {target}: both own routes; move what they share to a helper")
            elif target in ENDPOINTS and room(source) == "web" and source != "heartwatch.web.app":
                bad.append(f"{source} imports {target}: a helper of the routes must not import one of them")
    return sorted(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once (as the path of modules around it)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def string_text(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with each {...} as `x`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
    return None


def sql_outside_the_store() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if room(name) in SQL_ROOMS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            text = string_text(node)
            if text is not None and SQL_STRING.match(text):
                found.append(f"{name}:{node.lineno}: SQL {text.strip()[:40]!r}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in SQL_CALLS):
                found.append(f"{name}:{node.lineno}: .{node.func.attr}(")
    return found


def test_every_module_is_in_a_room() -> None:
    assert {room(name) for name in modules()} <= set(RANKS)


def test_imports_go_down_the_rooms_only() -> None:
    assert upward_imports(graph()) == []


def test_there_is_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_sql_is_written_only_in_the_store() -> None:
    assert sql_outside_the_store() == []


def test_the_core_uses_no_io_library() -> None:
    # Pure: no database, network, web framework or clock of its own. (zoneinfo reads tzdata: a pure look-up.)
    shells = {"sqlite3", "aiosqlite", "asyncio", "starlette", "httpx", "apprise", "click", "uvicorn", "socket"}
    for name, tree in modules().items():
        if room(name) != "core":
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & shells, f"{name} imports {names}"


# --- the checks above can fail: each finds what it is for in a made-up tree ---------------------------------


def test_the_checks_find_an_upward_import_a_cycle_and_sql() -> None:
    edges = {"heartwatch.core.model": {"heartwatch.web.api"}, "heartwatch.web.api": {"heartwatch.web.pages"},
             "heartwatch.web.pages": {"heartwatch.web.api"}}
    assert len(upward_imports(edges)) == 3
    assert cycles(edges) == [["heartwatch.web.api", "heartwatch.web.pages", "heartwatch.web.api"]]
    tree = ast.parse('rows = conn.execute(f"SELECT {x} FROM checks")\nq = "PRAGMA data_version"\nd = "Select one"\n'
                     'r = Route("/x", f, methods=["DELETE"])')
    hits = {t for t in map(string_text, ast.walk(tree)) if t is not None and SQL_STRING.match(t)}
    assert hits == {"SELECT x FROM checks", "PRAGMA data_version"}
    calls = [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert set(calls) & SQL_CALLS == {"execute"}


@pytest.mark.parametrize("module", sorted(ENDPOINTS))
def test_each_endpoint_module_exists(module: str) -> None:
    assert module in modules()
