"""The notebooks are plain percent scripts that run as notebooks: executed here with a real kernel."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO

NOTEBOOKS = REPO / "notebooks"
pytestmark = pytest.mark.slow


def execute(name: str, workdir: Path, parameters: str | None = None) -> tuple[object, float]:
    """Run every cell of ``notebooks/<name>.py`` in a fresh kernel whose working directory is ``workdir``.

    As in `make notebooks-html`, the kernel manager gives the kernel CurveZMQ keys (its kernelspec declares
    support): without them ipykernel warns that it runs over TCP unencrypted.
    """
    import jupytext
    import nbclient
    from traitlets.config import Config

    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    if parameters is not None:
        cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        cell.source = parameters
    started = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            config=Config(KernelManager={"transport_encryption": "auto"}),
                            resources={"metadata": {"path": str(workdir)}}).execute()  # a cell error raises
    return notebook, time.perf_counter() - started


def outputs(notebook: object) -> str:
    return "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"  # type: ignore[attr-defined]
                     for o in c.get("outputs", []))


def images(cell: object) -> int:
    return sum(1 for o in cell.get("outputs", []) if "image/png" in o.get("data", {}))  # type: ignore[attr-defined]


def assert_reads_cleanly(notebook: object, kernel_log: str) -> None:
    """What a reader sees: no figure shown as its text repr, no warning box, each figure an image once."""
    cells = [c for c in notebook.cells if c.cell_type == "code"]  # type: ignore[attr-defined]
    for cell in cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            # text/plain is what shows when there is no image beside it (a figure's image carries its repr too)
            shown = out.get("text", "") + ("" if "image/png" in data else data.get("text/plain", ""))
            assert "<Figure size" not in shown, cell.source
            if out.get("name") == "stderr":
                assert "Warning" not in out["text"], out["text"]
        assert images(cell) <= 1, cell.source  # a figure displayed twice
    assert "Kernel is running over TCP" not in kernel_log


def test_explore_dataset_runs_on_digits_from_the_notebooks_folder(capfd: pytest.CaptureFixture[str]) -> None:
    notebook, seconds = execute("explore_dataset", NOTEBOOKS)  # where Jupyter starts it
    text = outputs(notebook)
    assert "dataset digits" in text and "10 classes" in text and "exact copies" in text
    assert sum(images(c) for c in notebook.cells if c.cell_type == "code") >= 5  # type: ignore[attr-defined]
    assert_reads_cleanly(notebook, capfd.readouterr().err)
    print(f"explore_dataset executed in {seconds:.1f} s")


def test_analyse_run_reads_a_recorded_run_through_mlflow(fast_config, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    from trainlab.experiment import run_experiment

    out = run_experiment(fast_config("data.name=digits", "train.epochs=2", "tracking.trackers=[mlflow]"))
    assert (out.test.y_pred != out.test.y_true).any()  # so the two figures of mistakes are drawn too
    capfd.readouterr()
    (tmp_path / "notebooks").mkdir()
    notebook, seconds = execute("analyse_run", tmp_path / "notebooks")  # the latest run, found from notebooks/
    text = outputs(notebook)
    assert f"run {out.run_id}" in text
    assert re.search(rf"test accuracy +{out.test.metrics['accuracy']:.4f}", text)
    assert "expected calibration error" in text
    assert_reads_cleanly(notebook, capfd.readouterr().err)
    drawn = [c.source for c in notebook.cells if c.cell_type == "code" and images(c)]  # type: ignore[attr-defined]
    for figure in ("learning_curves_figure(", "confusion_pair_figure(", "reliability_figure(", "for row_axes, (i, j)",
                   "zip(axes.ravel(), wrong)"):
        assert [s for s in drawn if figure in s], f"no image of {figure}"
    chosen, _ = execute("analyse_run", tmp_path, parameters=f"RUN = {out.run_id!r}")
    assert f"run {out.run_id}" in outputs(chosen)
    print(f"analyse_run executed in {seconds:.1f} s")


def test_no_notebook_json_or_outputs_are_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    assert not [f for f in tracked if f.endswith(".ipynb")]
    assert "*.ipynb" in (REPO / ".gitignore").read_text().split()
    for script in NOTEBOOKS.glob("*.py"):
        text = script.read_text()
        assert "# %%" in text and "outputs" not in text.split("# ---", 2)[1]  # percent cells, no stored output
