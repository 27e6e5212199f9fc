"""Report pages: built from the record, self-contained, and opened in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainlab.cli import app
from trainlab.experiment import run_experiment
from trainlab.tracking.mlflow_backend import resolve_tracking_uri

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")


def invoke(*args: str, code: int = 0):  # noqa: ANN201
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def train(fast_config, *overrides: str):  # noqa: ANN201
    return run_experiment(fast_config("data.name=digits", "train.epochs=3", "tracking.trackers=[mlflow]",
                                      "name=report", "report=true", *overrides))


class Links(HTMLParser):
    """Every URL the page would load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.images += tag == "img"
        self.urls += [value or "" for name, value in attrs if name in ("src", "href")]


def links(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


def assert_self_contained(html: str) -> None:
    found = links(html)
    assert found.images > 0
    loaded = [u for u in found.urls if not u.startswith(("data:image/png;base64,", "../", "#"))]
    assert loaded == [], loaded
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "@import" not in html and "url(" not in html


def test_a_trained_run_writes_its_page_and_it_is_rebuilt_from_mlflow_alone(fast_config, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    out = train(fast_config)
    page = out.run_dir / "report.html"
    html = page.read_text()
    assert_self_contained(html)
    accuracy = f"{out.test.metrics['accuracy']:.4f}"
    assert accuracy in html and "Learning curves" in html and "Calibration" in html and "Mistakes" in html
    assert f"{out.parameters:,} parameters" in html and ", ".join(out.test.class_names) in html
    assert page.stat().st_size < 1_000_000

    client = MlflowClient(resolve_tracking_uri())
    run = client.search_runs([e.experiment_id for e in client.search_experiments()],
                             f"tags.trainlab_run_id = '{out.run_id}'")[0]
    assert "report.html" in [a.path for a in client.list_artifacts(run.info.run_id)]

    shutil.rmtree(out.run_dir)  # a teammate's run: only the record
    again = invoke("report", out.run_id, "--out", str(tmp_path / "again.html")).output
    assert "again.html" in again
    rebuilt = (tmp_path / "again.html").read_text()
    assert_self_contained(rebuilt)
    assert accuracy in rebuilt and f"{len(out.result.history)} epochs" in rebuilt
    assert rebuilt.count("<figure class=\"tile\">") == html.count("<figure class=\"tile\">")  # the same mistakes shown


def test_report_false_writes_no_page(fast_config) -> None:
    out = train(fast_config, "report=false")
    assert not (out.run_dir / "report.html").exists()


def test_a_sweep_page_and_no_page_per_trial(digits_sweep) -> None:
    sweep = digits_sweep("method: grid\nmetric: {name: val_accuracy, goal: maximize}\n"
                         "parameters:\n  train.optimizer.lr: {values: [0.001, 0.01, 0.03]}\n  model.arch: {values: [small]}\n")
    trials = [p for p in Path("runs").iterdir() if p.name.startswith(sweep + "-t")]
    assert len(trials) == 3 and not any((p / "report.html").exists() for p in trials)

    made = invoke("report", sweep).output
    page = Path("runs") / sweep / "report.html"
    assert str(page) in made
    html = page.read_text()
    assert_self_contained(html)
    assert "Ranking" in html and "train.optimizer.lr" in html and "against train.optimizer.lr" in html
    assert all(f"../{t.name}/report.html" in html for t in trials)


def test_a_page_of_a_against_b_carries_the_verdict(fast_config) -> None:
    a, b = train(fast_config, "seed=0"), train(fast_config, "seed=1", "model.arch=fast")
    made = invoke("report", a.run_id, b.run_id).output
    path = Path(made.split("report: ")[1].split(" (")[0])
    html = path.read_text()
    assert_self_contained(html)
    verdict = json.loads(invoke("compare", a.run_id, b.run_id, "--json").stdout)["verdict"]
    assert verdict.split(" (")[0] in html and "model.arch" in html and "B − A" in html
    assert "curves overlaid" in html and html.count("Confusion matrices") == 1
    path.unlink()
    assert "report: " in invoke("compare", a.run_id, b.run_id, "--report").output and path.is_file()


def test_report_of_an_unknown_run_is_one_line(fast_config) -> None:
    train(fast_config)
    out = invoke("report", "no-such-run", code=2).output
    assert "no run 'no-such-run'" in out and len(out.strip().splitlines()) == 1


@pytest.mark.slow
def test_pages_open_in_headless_chromium(fast_config, digits_sweep, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    a, b = train(fast_config, "seed=0"), train(fast_config, "seed=1", "model.arch=fast")
    pair = Path(invoke("report", a.run_id, b.run_id).output.split("report: ")[1].split(" (")[0])
    sweep = digits_sweep("method: grid\nmetric: {name: val_accuracy, goal: maximize}\n"
                         "parameters:\n  train.optimizer.lr: {values: [0.003, 0.01]}\n")
    invoke("report", sweep)
    pages = {"run": a.run_dir / "report.html", "pair": pair, "sweep": Path("runs") / sweep / "report.html"}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            for kind, path in pages.items():
                for width in (1280, 400):  # a desktop, and a narrow window
                    page = browser.new_page(viewport={"width": width, "height": 900})
                    errors: list[str] = []
                    requests: list[str] = []
                    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url[:80]}"))
                    page.on("request", lambda r: requests.append(r.url))
                    page.goto(path.resolve().as_uri())
                    page.wait_for_load_state("load")
                    assert errors == [], (kind, errors)
                    assert [u for u in requests if not u.startswith(("file://", "data:"))] == [], (kind, requests)
                    images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
                    assert images and all(images), (kind, images)
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, (kind, width, overflow)  # wide tables scroll inside their box
                    page.screenshot(path=str(tmp_path / f"{kind}-{width}.png"), full_page=True)
                    page.close()
        finally:
            browser.close()
    assert len(list(tmp_path.glob("*.png"))) == 6


def test_what_a_record_holds_is_escaped_on_the_page(fast_config) -> None:
    out = run_experiment(fast_config("data.name=digits", "train.epochs=1", "name=<img src=x onerror=alert(1)>",
                                     "report=true"))
    html = (out.run_dir / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
