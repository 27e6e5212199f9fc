"""The architecture holds: import-linter's contracts (.importlinter: the layers import only downward, no import
cycle), and a trainlab module imported inside a function only to defer a heavy third-party import."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "trainlab"
# what `trainlab --help` must not wait for (the command line imports every command module at its start): a module
# that pulls one in may be imported where it is needed
HEAVY = frozenset({"torch", "mlflow", "wandb", "optuna", "matplotlib", "scipy", "sklearn", "pandas", "sqlalchemy",
                   "numpy", "pydantic", "yaml", "PIL", "jinja2", "psutil"})
# function-level imports of light trainlab modules that remain, each with its reason; none is to be added
KNOWN_LIGHT: set[tuple[str, str]] = set()


def test_the_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--config", str(SOURCE.parents[1] / ".importlinter")], cwd=SOURCE.parents[1],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 kept, 0 broken" in done.stdout, done.stdout[-3000:]


def module_name(path: Path) -> str:
    return ".".join(("trainlab", *path.relative_to(SOURCE).with_suffix("").parts)).removesuffix(".__init__")


def imported(node: ast.AST, modules: set[str]) -> list[str]:
    """The modules an import statement imports (``from trainlab import cli`` imports trainlab.cli)."""
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        children = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
        return children or [node.module]
    return [a.name for a in node.names] if isinstance(node, ast.Import) else []


@cache
def import_map() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, int]]]]:
    """Each module's imports at its top (outside functions and TYPE_CHECKING), and inside its functions."""
    paths = {module_name(p): p for p in SOURCE.rglob("*.py")}
    top: dict[str, set[str]] = {}
    inner: dict[str, list[tuple[str, int]]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top[module] = {name for node in tree.body if not isinstance(node, ast.If)
                       for n in ([node] if isinstance(node, (ast.Import, ast.ImportFrom)) else [])
                       for name in imported(n, set(paths))}
        inner[module] = [(name, n.lineno) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                         for n in ast.walk(f) for name in imported(n, set(paths))]
    return top, inner


def is_heavy(module: str, seen: frozenset[str] = frozenset(), importer: str = "") -> bool:
    """Whether importing ``module`` (from ``importer``) imports a heavy library: itself, through the packages it
    is in (Python imports those first, unless the importer is in them too), or through the modules it imports."""
    top, _ = import_map()
    parents = [p for p in (".".join(module.split(".")[:i]) for i in range(2, module.count(".") + 1))
               if not importer.startswith(p + ".")]
    return any(name.split(".")[0] in HEAVY or (name in top and name not in seen and is_heavy(name, seen | {module}))
               for name in [*top.get(module, ()), *parents])


def light_imports_in_functions() -> set[tuple[str, str]]:
    top, inner = import_map()
    return {(module, name) for module, found in inner.items() for name, _ in found
            if name in top and name.startswith("trainlab") and not is_heavy(name, importer=module)}


def test_a_trainlab_module_is_imported_in_a_function_only_to_defer_a_heavy_library() -> None:
    found = light_imports_in_functions()
    assert found - KNOWN_LIGHT == set(), "import these at the module's top (they pull in nothing heavy)"
    assert KNOWN_LIGHT - found == set(), "a known one is gone: take it off KNOWN_LIGHT"


def test_the_check_tells_heavy_from_light() -> None:
    assert is_heavy("trainlab.models") and is_heavy("trainlab.train") and is_heavy("trainlab.config")
    assert not is_heavy("trainlab.errors") and not is_heavy("trainlab.redaction")
