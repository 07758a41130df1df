"""Apps import one way only, lower first (README, "Layout"), and never from
inside a function, where an import would hide a circle instead of removing it.

Read from the source: nothing is imported or run.
"""

import ast
from pathlib import Path

CONSOLE = Path(__file__).resolve().parent.parent / "console"

#: Each app may import the apps of a lower rank only.
RANK = {
    "skyvern": 0,
    "simulator": 0,
    "background": 0,
    "audit": 0,
    "teams": 1,
    "runs": 2,
    "sync": 3,
    "bulk": 4,
    "twofactor": 5,
    "demo": 5,
    "incidents": 5,
    "operations": 6,
    "oidc": 5,
}
#: Project modules that wire the apps together; every other module directly in
#: console/ (logins.py, spreadsheets.py, ...) is below every app and imports none.
WIRING = {"urls", "settings", "wsgi"}


def _unit(module: str) -> str | None:
    """The app a `console.…` module belongs to, or `console.<module>` for a
    project module; None outside the console."""
    parts = module.split(".")
    if parts[0] != "console" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else f"console.{parts[1]}"


def _imports(path: Path):
    """(imported module, inside a function?) for every import of the file."""
    tree = ast.parse(path.read_text())
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(inner) for inner in ast.walk(node) if inner is not node)
    package = ".".join(path.relative_to(CONSOLE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            relative = ".".join(base + ([node.module] if node.module else []))
            names = [relative if node.level else node.module or ""]
        else:
            continue
        for name in names:
            yield name, id(node) in in_function


def _wrong_imports() -> list[str]:
    wrong = []
    for path in sorted(CONSOLE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        here = _unit(".".join(path.relative_to(CONSOLE.parent).with_suffix("").parts))
        for name, hidden in _imports(path):
            there = _unit(name)
            if there is None or there == here:
                continue
            where = f"{path.relative_to(CONSOLE.parent)} imports {name}"
            if hidden:
                wrong.append(f"{where} inside a function")
            elif here in RANK and there in RANK and RANK[there] >= RANK[here]:
                wrong.append(f"{where}: {there} is not below {here}")
            elif here not in RANK and here.split(".")[1] not in WIRING and there in RANK:
                wrong.append(f"{where}: a project module below every app")
    return wrong


def test_apps_import_only_lower_apps_and_only_at_module_level():
    assert _wrong_imports() == []


def test_every_app_has_a_rank():
    apps = {path.parent.name for path in CONSOLE.glob("*/__init__.py")}
    assert apps == set(RANK)
