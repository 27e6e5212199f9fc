"""trainlab's layers import only downward: core, then tracking, then the run record, then experiments, then the
command line. Every import of a trainlab module counts, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "trainlab"
LAYERS = {  # a module's layer: its package's (first match), else core (0)
    "trainlab.cli": 4, "trainlab.__main__": 4,
    "trainlab.experiments": 3,
    "trainlab.experiment": 2, "trainlab.runs": 2, "trainlab.predict": 2, "trainlab.evaluation_run": 2,
    "trainlab.mlflow_model": 2, "trainlab.notebook": 2,
    "trainlab.tracking": 1,
}
# upward imports that remain, each to be removed (issue 25): the test fails when one goes, so the list shrinks
KNOWN = {
    ("trainlab.experiment", "trainlab.experiments.run_page"),  # the run's page written at its end
    ("trainlab.tracking.mlflow_backend", "trainlab.mlflow_model"),  # the pyfunc model logged with a run
}


def layer(module: str) -> int:
    return next((n for name, n in LAYERS.items() if module == name or module.startswith(name + ".")), 0)


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in SOURCE.rglob("*.py"):
        module = ".".join(("trainlab", *path.relative_to(SOURCE).with_suffix("").parts)).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from trainlab import cli` imports the module trainlab.cli
                names = [f"trainlab.{a.name}" for a in node.names] if node.module == "trainlab" else [node.module]
            else:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found |= {(module, name) for name in names
                      if name.startswith("trainlab.") and layer(name) > layer(module)}
    return found


def test_layers_import_only_downward() -> None:
    found = upward_imports()
    assert found - KNOWN == set(), "imports up the layers (move the shared piece down instead)"
    assert KNOWN - found == set(), "a known upward import is gone: take it off KNOWN"


def test_the_check_sees_an_upward_import() -> None:
    assert layer("trainlab.tracking.run") == 1 and layer("trainlab.experiments.sweep") == 3
    assert layer("trainlab.config") == 0 and layer("trainlab.cli.app") == 4 and layer("trainlab.experiment") == 2
