"""The code's shape, for the redesign's before/after numbers (issue 12).

Counts modules and lines under console/, imports between the console's apps
(at module level and hidden inside functions), circles between apps, and the
largest files and functions. Reads source only; runs nothing.

    python bench/code_shape.py [--top 10]
"""

import argparse
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "console"


def app_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "console":
        return None
    if len(parts) == 1:
        return "(project)"
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[1]).is_dir() else "(project)"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()

    files = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)
    migrations = sorted(p for p in PACKAGE.rglob("migrations/0*.py"))
    lines = {p: len(p.read_text().splitlines()) for p in files}
    edges = defaultdict(lambda: [0, 0])  # (from_app, to_app) -> [module level, in functions]
    functions = []
    for path in files:
        module = module_name(path)
        here = app_of(module)
        tree = ast.parse(path.read_text())
        parents = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                parents[child] = parent
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append(
                    (node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.name}")
                )
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = resolve(node, module, path.name == "__init__.py")
                targets = [target] + [f"{target}.{a.name}" for a in node.names]
                targets = targets[:1]
            for target in targets:
                there = app_of(target)
                if there is None or there == here:
                    continue
                inside = False
                walk = parents.get(node)
                while walk is not None:
                    if isinstance(walk, ast.FunctionDef | ast.AsyncFunctionDef):
                        inside = True
                        break
                    walk = parents.get(walk)
                edges[(here, there)][1 if inside else 0] += 1

    module_level = {k for k, v in edges.items() if v[0]}
    graph = defaultdict(set)
    for a, b in module_level:
        graph[a].add(b)
    circles = sorted({tuple(sorted((a, b))) for a, b in module_level if a in graph[b]})

    def migration_imports(path):
        tree = ast.parse(path.read_text())
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("console"):
                found.append(node.module)
            if isinstance(node, ast.Import):
                found += [a.name for a in node.names if a.name.startswith("console")]
        return found

    print(f"modules (non-migration): {len(files)}, lines: {sum(lines.values())}")
    print(f"apps: {len({app_of(module_name(p)) for p in files})}")
    print(
        f"imports between apps: {sum(v[0] for v in edges.values())} at module level, "
        f"{sum(v[1] for v in edges.values())} inside functions"
    )
    print(
        "two-way (circles between apps, module level): "
        + (", ".join("<->".join(c) for c in circles) or "none")
    )
    print("app pairs (module level / in functions):")
    for (a, b), (top, inner) in sorted(edges.items()):
        print(f"  {a:>10} -> {b:<10} {top:3d} / {inner}")
    print(
        "migrations importing console code: "
        + (
            ", ".join(
                f"{p.relative_to(ROOT)} ({', '.join(m)})"
                for p in migrations
                if (m := migration_imports(p))
            )
            or "none"
        )
    )
    print("largest files:")
    for path, n in sorted(lines.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {n:5d} {path.relative_to(ROOT)}")
    print("largest functions:")
    for n, name in sorted(functions, reverse=True)[: args.top]:
        print(f"  {n:5d} {name}")


if __name__ == "__main__":
    main()
