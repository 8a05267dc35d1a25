"""Import rules import-linter cannot state (the layer contracts are in pyproject.toml, [tool.importlinter]).

1. No private name crosses modules: `from x import _y` of a project module fails.
2. The core and the stages take nothing from `plantstream` but `plantstream.core` (so a new top-layer
   module is above them even before it is listed in the layers contract).
3. A module's logger comes from `plantstream.core.logs.get(__name__)` (one naming scheme), not from a
   module-level `logging.getLogger(...)`.

Exit 1 listing each offending import with file and line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("plantstream", "producers", "processors", "sinks", "schemas")
LOWER = ("plantstream.core", "producers", "processors", "sinks", "schemas")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every import statement, relative ones resolved."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([target] if target else [])])
            found.append((node.lineno, target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return found


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def problems(path: Path) -> list[str]:
    module = module_name(path)
    out: list[str] = []
    for line, target, names in imports(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py"):
        if not any(in_package(target, p) for p in PACKAGES):
            continue
        where = f"{path.relative_to(ROOT)}:{line}"
        out.extend(
            f"{where}: private name {target}.{name} imported from another module. Fix: make it public or move it"
            for name in names
            if name.startswith("_") and not name.startswith("__")
        )
        taken = [f"{target}.{n}" for n in names] if target == "plantstream" else [target]
        if any(in_package(module, p) for p in LOWER):
            for t in (t for t in taken if in_package(t, "plantstream") and not in_package(t, "plantstream.core")):
                out.append(
                    f"{where}: {module} (core or a stage) imports {t} of the layer above. "
                    "Fix: move what it needs into plantstream.core, or the importer up"
                )
    return out


LOGS_MODULE = "plantstream.core.logs"


def logger_calls(path: Path) -> list[str]:
    """A module's own logger made with logging.getLogger (at module level) instead of logs.get(__name__)."""
    if module_name(path) == LOGS_MODULE:
        return []
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: the module's logger from logging.getLogger. Fix: "
        "log = logs.get(__name__) (from plantstream.core import logs)"
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == "getLogger"
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id == "logging"
    ]


def main() -> int:
    paths = [path for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))]
    found = [p for path in paths for p in [*problems(path), *logger_calls(path)]]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
