#!/usr/bin/env python3
"""Print the import circles among Ferry's own modules; exit 1 when there is one.

Every ``import`` counts, wherever it is written: at the top of a module, inside a function,
under ``if TYPE_CHECKING:``. ``from package import name`` counts as importing ``package``
(its ``__init__`` runs) and, when ``name`` is a module, that module too. A circle is a
strongly connected group of modules (Tarjan's algorithm); each is printed with one path
around it, so the edge to cut is easy to find. import-linter's contracts (pyproject.toml)
check the layers and circles among siblings; this script also catches a package's
``__init__`` caught in a loop with its own modules, which siblings-only checks do not see.

    python3 scripts/cycles.py [ROOT]   # ROOT: the checkout (default: this script's); prints
                                       # "no import circles (N modules, M imports)"
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("core", "protocol", "servers", "lanes", "transports", "agent", "hub", "service",
            "ferry")


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every module of Ferry's packages (migrations left out)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if "migrations" in rel.parts:
                continue
            parts = rel.with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of ours that module ``name`` (file ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            found = target
            while found and found not in known:  # a name in a module: that module
                found = found.rpartition(".")[0]
            if found and found != name:
                yield found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def path_around(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One loop through the group's first module (breadth-first, inside the group)."""
    start, members = group[0], set(group)
    came: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                loop = [node]
                while loop[-1] != start:
                    loop.append(came[loop[-1]])
                return [*reversed(loop), start]
            if nxt not in came:
                came[nxt] = node
                queue.append(nxt)
    return group


def main(root: Path | None = None) -> int:
    root = root or Path(__file__).resolve().parent.parent
    known = modules(root)
    graph = {name: set(imported(name, path, known)) for name, path in known.items()}
    found = circles(graph)
    edges = sum(len(targets) for targets in graph.values())
    if not found:
        print(f"no import circles ({len(known)} modules, {edges} imports)")
        return 0
    for group in sorted(found, key=len, reverse=True):
        print(f"circle of {len(group)}: {' -> '.join(path_around(group, graph))}")
    return 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
