"""Report pages: built from the record, self-contained, and opened in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from typer.testing import CliRunner

from trainlab.cli import app
from trainlab.experiment import run_experiment
from trainlab.experiments.pair import Comparison
from trainlab.experiments.sides import Side
from trainlab.tracking.mlflow_store import resolve_tracking_uri

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
    """Every URL the page would load or link to, the links it makes, and its thumbnails' captions."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.hrefs: list[str] = []
        self.images = 0
        self.captions: list[str] = []
        self._caption: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.images += tag == "img"
        self.urls += [value or "" for name, value in attrs if name in ("src", "href")]
        self.hrefs += [value or "" for name, value in attrs if tag == "a" and name == "href"]
        if tag == "figcaption":
            self._caption = []

    def handle_data(self, data: str) -> None:
        if self._caption is not None:
            self._caption.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figcaption" and self._caption is not None:
            self.captions.append("".join(self._caption).strip())
            self._caption = None


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


CAPTION = re.compile(r"^\S.* (→|->) \S.* [01]\.\d\d$")  # true → predicted 0.93


def assert_captioned(html: str) -> None:
    """Every thumbnail of a test image says: true class → predicted class, and the prediction's probability."""
    captions = links(html).captions
    assert len(captions) == html.count('<figure class="tile">') > 0
    assert all(CAPTION.match(c) for c in captions), captions


def assert_links_resolve(html: str, page: Path) -> list[Path]:
    """Every relative link on the page leads to a file that exists; returns those files."""
    relative = [h for h in links(html).hrefs if not urlparse(h).scheme and not h.startswith("#")]
    targets = [(page.parent / unquote(h)).resolve() for h in relative]
    assert all(t.is_file() for t in targets), [str(t) for t in targets if not t.is_file()]
    return targets


@pytest.mark.slow
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
    assert_captioned(html)
    assert "training process memory (RSS, MB)" in html and "process memory (RSS, MB)</td>" in html
    assert "was not recorded" not in html

    client = MlflowClient(resolve_tracking_uri())
    run = client.search_runs([e.experiment_id for e in client.search_experiments()],
                             f"tags.trainlab_run_id = '{out.run_id}'")[0]
    assert "report.html" in [a.path for a in client.list_artifacts(run.info.run_id)]
    rss = client.get_metric_history(run.info.run_id, "process_rss_mb")  # the run's own memory, each epoch
    assert [p.step for p in rss] == [1, 2, 3] and all(50 < p.value < 100_000 for p in rss)

    shutil.rmtree(out.run_dir)  # a teammate's run: only the record
    again = invoke("report", out.run_id, "--out", str(tmp_path / "again.html")).output
    assert "again.html" in again
    rebuilt = (tmp_path / "again.html").read_text()
    assert_self_contained(rebuilt)
    assert accuracy in rebuilt and f"{len(out.result.history)} epochs" in rebuilt
    assert rebuilt.count("<figure class=\"tile\">") == html.count("<figure class=\"tile\">")  # the same mistakes shown
    assert_captioned(rebuilt)
    assert "training process memory (RSS, MB)" in rebuilt and "was not recorded" not in rebuilt


def test_report_false_writes_no_page(fast_config) -> None:
    out = train(fast_config, "report=false")
    assert not (out.run_dir / "report.html").exists()


@pytest.mark.slow
def test_a_sweep_page_links_every_seed_of_every_trial_to_its_page(digits_sweep, monkeypatch) -> None:
    sweep = digits_sweep("method: grid\nseeds: 2\nmetric: {name: val_accuracy, goal: maximize}\n"
                         "parameters:\n  train.optimizer.lr: {values: [0.001, 0.03]}\n  model.arch: {values: [small]}\n")
    trials = sorted(p for p in Path("runs").iterdir() if p.name.startswith(sweep + "-t"))
    assert len(trials) == 4 and not any((p / "report.html").exists() for p in trials)  # trials write no page

    made = invoke("report", sweep).output
    page = Path("runs") / sweep / "report.html"
    assert str(page) in made
    html = page.read_text()
    assert_self_contained(html)
    assert "Ranking" in html and "train.optimizer.lr" in html and "against train.optimizer.lr" in html
    # both seeds of both trials: linked, and the page behind each link written (a run's page, with its mistakes)
    targets = assert_links_resolve(html, page)
    assert sorted(targets) == sorted((t / "report.html").resolve() for t in trials)
    assert all(f"../{t.name}/report.html" in html for t in trials)
    for target in targets:
        assert_captioned(target.read_text())

    # written anywhere else, its links still lead to the trials' pages (kept: they are newer than the runs)
    before = {t: t.stat().st_mtime_ns for t in targets}
    invoke("report", sweep, "--out", "elsewhere/sweep.html", "--no-log")
    elsewhere = Path("elsewhere/sweep.html")
    assert sorted(assert_links_resolve(elsewhere.read_text(), elsewhere)) == sorted(targets)
    assert {t: t.stat().st_mtime_ns for t in targets} == before

    # a big sweep: only the best configurations' runs get a page with the sweep's; another's once it has one
    import trainlab.experiments.report as report_module

    for t in trials:
        (t / "report.html").unlink()
    monkeypatch.setattr(report_module, "TRIAL_PAGES", 1)
    invoke("report", sweep, "--no-log")
    linked = assert_links_resolve(page.read_text(), page)
    assert len(linked) == 2 and "(no page yet)" in page.read_text()
    other = next(t for t in trials if (t / "report.html").resolve() not in linked)
    invoke("report", other.name, "--no-log")
    invoke("report", sweep, "--no-log")
    assert (other / "report.html").resolve() in assert_links_resolve(page.read_text(), page)


@pytest.mark.slow
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


CUSTOM = ("{arch: custom, layers: [{type: conv, out: 8, kernel: 3}, {type: batchnorm}, {type: relu}, "
          "{type: maxpool, kernel: 2}, {type: dropout, p: 0.25}, {type: linear, out: 32}, {type: relu}]}")
DOM = """() => ({
  captions: Array.from(document.querySelectorAll('figure.tile')).map(f => f.querySelector('figcaption').innerText),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href, a.innerText]),
  figures: Array.from(document.querySelectorAll('img.figure')).map(
    i => [i.alt, i.naturalWidth, Math.round(i.getBoundingClientRect().width)]),
  system: (document.querySelector('#system') || {innerText: ''}).innerText,
  ranking: (document.querySelector('#ranking') || {innerText: ''}).innerText,
})"""


@pytest.mark.slow
def test_pages_open_in_headless_chromium(fast_config, digits_sweep, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    a, b = train(fast_config, "seed=0"), train(fast_config, "seed=1", "model.arch=fast")
    pair = Path(invoke("report", a.run_id, b.run_id).output.split("report: ")[1].split(" (")[0])
    sweep = digits_sweep("method: grid\nseeds: 2\nmetric: {name: val_accuracy, goal: maximize}\n"
                         f"parameters:\n  model: {{values: [{{arch: small}}, {CUSTOM}]}}\n")
    invoke("report", sweep)
    trials = sorted(p.name for p in Path("runs").iterdir() if p.name.startswith(sweep + "-t"))
    pages = {"run": a.run_dir / "report.html", "pair": pair, "sweep": Path("runs") / sweep / "report.html",
             "trial": Path("runs") / trials[-1] / "report.html"}
    seen: dict[str, dict] = {}

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
                    page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                    page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                    page.on("requestfailed", lambda r, errors=errors: errors.append(f"failed: {r.url[:80]}"))
                    page.on("request", lambda r, requests=requests: requests.append(r.url))
                    page.goto(path.resolve().as_uri())
                    page.wait_for_load_state("load")
                    assert errors == [], (kind, errors)
                    assert [u for u in requests if not u.startswith(("file://", "data:"))] == [], (kind, requests)
                    images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
                    assert images and all(images), (kind, images)
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, (kind, width, overflow)  # wide tables scroll inside their box
                    if width == 1280:
                        seen[kind] = page.evaluate(DOM)
                    page.screenshot(path=str(tmp_path / f"{kind}-{width}.png"), full_page=True)
                    page.close()
        finally:
            browser.close()
    assert len(list(tmp_path.glob("*.png"))) == 8

    for kind, dom in seen.items():
        # at 1280 px every figure is shown at its own size: the font sizes test_page_figures_* measure are the ones seen
        assert all(shown >= natural for _, natural, shown in dom["figures"]), (kind, dom["figures"])
        # every link that is not an anchor leads to a file that exists
        for href, url, _ in dom["links"]:
            if not href.startswith("#"):
                assert urlparse(url).scheme == "file" and Path(unquote(urlparse(url).path)).is_file(), (kind, href)
    for kind in ("run", "trial"):
        captions = seen[kind]["captions"]
        assert captions and all(CAPTION.match(c) for c in captions), (kind, captions)
        assert "Memory: what the training process itself held" in seen[kind]["system"], kind
        assert re.search(r"process memory \(RSS, MB\)\s+[\d,]+", seen[kind]["system"]), seen[kind]["system"]
    # the sweep page: both seeds of both trials linked; the custom layer list in full
    assert sorted(text for _, _, text in seen["sweep"]["links"]) == trials and len(trials) == 4
    ranking = seen["sweep"]["ranking"]
    assert '"arch": "custom"' in ranking and '"out": 32' in ranking and '"type": "relu"}]}' in ranking


def test_what_a_record_holds_is_escaped_on_the_page(fast_config) -> None:
    out = run_experiment(fast_config("data.name=digits", "train.epochs=1", "name=<img src=x onerror=alert(1)>",
                                     "report=true"))
    html = (out.run_dir / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_run_with_augmentation_shows_its_draws_and_one_without_does_not(fast_config) -> None:
    from trainlab.pages.run_page import RunView, augmentation_section

    augmented = run_experiment(fast_config("data.name=digits", "train.epochs=1", "report=true",
                                           "data.augment.flip=true", "data.augment.translate=2",
                                           "data.augment.cutout=3"))
    html = (augmented.run_dir / "report.html").read_text()
    assert 'id="augmentation"' in html
    assert "Translate ±2 px, flip, cutout 3 px; training batches only (never validation or test images)" in html
    assert "four augmented draws of each" in html
    assert_self_contained(html)
    plain = run_experiment(fast_config("data.name=digits", "train.epochs=1", "report=true"))
    assert "Augmentation" not in (plain.run_dir / "report.html").read_text()
    # rebuilt where the training images cannot be loaded: the options are said, the grid is not drawn
    view = RunView("elsewhere", "default", "FINISHED", None, None, {}, {},
                   {"seed": 0, "data": {"augment": {"flip": True}}}, {}, {}, {}, [], None)  # type: ignore[arg-type]
    section = augmentation_section(view)
    assert section is not None and section.figures == []
    assert section.notes[-1] == "Augmented samples not shown: the run's training images cannot be loaded here."


# -- the figures: legible on a page viewed 1280 px wide ----------------------------------------------------

FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def history(epochs: int) -> list[dict[str, float]]:
    return [{"step": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_accuracy": 1 - 1 / (e + 1),
             "val_accuracy": 1 - 1.2 / (e + 1), "val_macro_f1": 0.8, "val_auroc": 0.97, "lr": 0.001,
             "images_per_second": 10480.0, "epoch_seconds": 0.16} for e in range(1, epochs + 1)]


def page_figures(epochs: int = 1) -> dict:
    """Every kind of figure a page shows, for 10 classes."""
    import numpy as np

    from trainlab import plots

    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 40, (10, 10))
    np.fill_diagonal(confusion, 900)
    roc = {c: {"fpr": [0, 0.1, 1], "tpr": [0, 0.9, 1]} for c in FASHION}
    pr = {c: {"recall": [0, 0.9, 1], "precision": [1, 0.9, 0.1]} for c in FASHION}
    return {
        "learning curves": plots.learning_curves_figure(history(epochs), 1, "val_accuracy"),
        "confusion": plots.confusion_pair_figure(confusion, FASHION),
        "roc and pr": plots.roc_pr_figure(roc, pr, 0.97),
        "calibration": plots.reliability_figure(np.array([0.3, 0.6, 0.9]), np.array([0.35, 0.65, 0.95]),
                                                np.arange(10), 0.03),
        "system": plots.system_figure({"training process memory (RSS, MB)": ([9.5], [412.0]),
                                       "the machine's CPU (%, all processes)": ([2.0, 4.0, 6.0], [50.0, 60.0, 55.0])}),
        "A and B": plots.overlaid_curves_figure({"A 20261203-175824-e469": history(epochs),
                                                 "B 20261203-175824-e470": history(epochs)}),
        "by trial": plots.scatter_figure({"complete": ([0, 1], [0.9, 0.8]), "pruned": ([2], [0.5])}, "trial",
                                         "val_accuracy", "val_accuracy by trial", integer_x=True),
        "by value": plots.strip_figure({"small": [0.9, 0.91], "value 1": [0.6]}, "val_accuracy", "by model"),
        "parallel": plots.parallel_figure(["train.optimizer.lr", "train.batch_size"], [[-3, 16], [-2, 64]],
                                          [0.9, 0.8], "val_accuracy"),
        "importances": plots.bars_figure({"train.optimizer.lr": 0.7, "model": 0.3}, "importance", "What mattered"),
    }


def test_page_figures_text_is_at_least_9_px_at_1280(tmp_path: Path) -> None:
    from matplotlib.text import Text
    from PIL import Image

    from trainlab.plots import PAGE_WIDTH_PX, png_data_uri

    for name, fig in page_figures().items():
        uri = png_data_uri(fig)  # drawn at the page's resolution
        png_width, _ = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size
        shown = min(png_width, PAGE_WIDTH_PX)  # a page's CSS shrinks a figure to its column, never enlarges it
        dpi = png_width / fig.get_figwidth()  # the PNG's pixels per inch
        for text in fig.findobj(Text):
            if text.get_visible() and text.get_text().strip() and text.get_window_extent().width > 0:
                px = text.get_fontsize() * dpi / 72 * shown / png_width
                assert px >= 9, (name, text.get_text(), round(px, 1))


def test_few_epochs_get_visible_markers_and_whole_number_ticks() -> None:
    from matplotlib.lines import Line2D

    for epochs in (1, 2, 3):
        figures = page_figures(epochs)
        for name in ("learning curves", "A and B", "by trial"):
            fig = figures[name]
            fig.draw_without_rendering()
            for ax in fig.axes:
                low, high = ax.get_xlim()
                ticks = [t for t in ax.get_xticks() if low <= t <= high]
                expected = [0, 1, 2] if name == "by trial" else list(range(1, epochs + 1))
                assert ticks == expected, (name, epochs, ticks)
                data = [line for line in ax.get_lines() if len(line.get_xdata()) and
                        list(line.get_xdata()) == list(range(1, epochs + 1))]
                assert all(line.get_marker() not in (None, "None", "", " ") and line.get_markersize() >= 5
                           for line in data), (name, epochs)
                assert name == "by trial" or data, (name, ax.get_title())
        assert all(isinstance(line, Line2D) for line in figures["learning curves"].axes[0].get_lines())


def test_legends_cover_no_data() -> None:
    for name, fig in page_figures(epochs=5).items():
        fig.draw_without_rendering()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        for legend in legends:
            box = legend.get_window_extent()
            assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes), name


def test_a_run_recorded_without_process_memory_says_so() -> None:
    from trainlab.pages.run_page import MACHINE_CPU, RunView, system_section

    view = RunView("old", "default", "FINISHED", None, None, {}, {}, {}, {}, {}, {}, history(2), None,  # type: ignore
                   system={MACHINE_CPU: ([1.0, 3.0], [40.0, 60.0])})
    section = system_section(view)
    assert any("memory was not recorded for this run" in note for note in section.notes)
    assert len(section.figures) == 1 and "the machine's CPU" in section.figures[0].alt
    nothing = system_section(RunView("older", "default", "FINISHED", None, None, {}, {}, {}, {}, {}, {}, [],
                                     None))  # type: ignore[arg-type]
    assert nothing.figures == [] and len(nothing.notes) == 2
    # a short run: the machine's CPU sampled once is said, not drawn as a lone dot on a made-up axis
    once = system_section(RunView("short", "default", "FINISHED", None, None, {}, {}, {}, {}, {}, {}, history(2),
                                  None, system={MACHINE_CPU: ([2.1], [37.0])}))  # type: ignore[arg-type]
    assert once.figures == [] and any("one sample (37), too few to draw" in note for note in once.notes)


# -- the defects a new user found: pair pages that overwrite each other, crowded ticks, a hidden diagonal ---------


def seed_group(name: str, seeds: int = 2):  # noqa: ANN201
    """A side of seed repeats, as `side_of` makes one for a sweep trial SWEEP#N."""
    from trainlab.runs import RunRow

    stem = name.replace("#", "-t")
    return Side(name, [RunRow(f"{stem}-s{s}", f"m{stem}{s}", "default", "FINISHED", 0, {"seed": str(s)},
                              {"test_accuracy": 0.9}, {}) for s in range(seeds)])


def group_comparison(a: str, b: str):  # noqa: ANN201
    from trainlab.experiments.significance import Difference

    d = Difference("test_accuracy", 0.90, 0.92, 0.02, 0.01, 0.03, 0.01, "permutation test over 2 + 2 seeds")
    return Comparison(seed_group(a), seed_group(b), "test_accuracy", 0.05, {"dataset": "digits"}, {}, {}, [d],
                      "better", "B is better than A", [])


def test_pages_of_two_pairs_of_seed_groups_do_not_overwrite_each_other() -> None:
    from trainlab.experiments.report import write_pair_report

    sweep, other = "sweep-digits-lr-1a2b3c4d", "sweep-other-9f8e7d6c"
    first, _ = write_pair_report(None, group_comparison(f"{sweep}#0", f"{sweep}#1"))  # type: ignore[arg-type]
    second, _ = write_pair_report(None, group_comparison(f"{other}#0", f"{other}#2"))  # type: ignore[arg-type]
    assert first != second and first.is_file() and second.is_file()
    assert first.parent == second.parent == Path("reports")
    for path, names in ((first, (sweep, "0", "1")), (second, (other, "0", "2"))):
        assert all(n in path.stem for n in names), path
        heading = re.search(r"<h1>(.*?)</h1>", path.read_text()).group(1)
        assert f"{names[0]}#{names[1]}" in heading and f"{names[0]}#{names[2]}" in heading, heading
    # the other order is another page (A and B swapped), and the same pair is the same page
    assert write_pair_report(None, group_comparison(f"{sweep}#1", f"{sweep}#0"))[0] != first  # type: ignore
    assert write_pair_report(None, group_comparison(f"{sweep}#0", f"{sweep}#1"))[0] == first  # type: ignore


def test_a_pair_page_name_is_safe_and_bounded_for_any_side_name() -> None:
    from trainlab.experiments.report import write_pair_report

    long = "params.`train.optimizer.lr` = '0.001' and tags.note = '" + "x/" * 200 + "'"
    names = [(long, long + " "), ("../../etc/passwd", "a\\b:c*d?e\"f<g>h|i"), (".hidden", "-dash")]
    paths = {write_pair_report(None, group_comparison(a, b))[0] for a, b in names}  # type: ignore[arg-type]
    assert len(paths) == len(names)
    for path in paths:
        assert path.parent == Path("reports") and path.is_file(), path
        assert len(path.name) <= 200 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.html", path.name), path.name


def fake_sweep(monkeypatch: pytest.MonkeyPatch, key: str, file_values: list, tried: list[tuple[int, object, float]]):
    """A sweep page's inputs without training: the ranking (best first) and the parent run's sweep.yaml."""
    from types import SimpleNamespace

    from trainlab.experiments import sweep_run
    from trainlab.experiments.study_ranking import TrialRow

    rows = sorted((TrialRow(n, "complete", {key: v, "train.optimizer.lr": 0.001 * (n + 1)}, value, [value], 2,
                            run_ids=[f"sweep-x-t{n:03d}"]) for n, v, value in tried), key=lambda r: -r.value)
    outcome = sweep_run.SweepOutcome("sweep-x", "val_accuracy", "maximize", rows, {}, [], {})
    monkeypatch.setattr(sweep_run, "sweep_ranking", lambda sweep_id, uri=None: outcome)
    source = {"method": "grid", "parameters": {key: {"values": file_values}}}

    class Record:
        uri = "file:./mlruns"

        def json_artifact(self, row: object, path: str) -> object:
            assert path == "sweep.yaml"
            return json.loads(json.dumps(source, sort_keys=True))  # MLflow writes the YAML with its keys sorted

    parent = SimpleNamespace(run_id="sweep-x", experiment="default", status="FINISHED", tags={"sweep_method": "grid"})
    return Record(), parent


def test_long_categorical_values_are_numbered_in_the_sweep_files_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainlab.experiments.report import sweep_page

    custom = {"arch": "custom", "layers": [{"type": "conv", "out": 8, "kernel": 3}, {"type": "relu"},
                                           {"type": "linear", "out": 32}]}
    wide = {"arch": "custom", "layers": [{"type": "conv", "out": 64, "kernel": 5}, {"type": "relu"}]}
    values = [{"arch": "small"}, {"arch": "fast"}, wide, custom]  # the custom architecture is the 4th in the file
    # the best trial is the custom one, tried last (trial 3); the wide one was tried second (trial 1)
    record, parent = fake_sweep(monkeypatch, "model", values, [(0, values[0], 0.90), (1, wide, 0.91),
                                                              (2, values[1], 0.89), (3, custom, 0.95)])
    page = sweep_page(record, parent)  # type: ignore[arg-type]
    section = next(s for s in page.sections if s.anchor == "params")
    table = next(t for t in section.tables if "model" in t.headers)
    named = {label: cell["text"] for label, cell in table.rows}
    assert named == {"value 3": json.dumps(wide), "value 4": json.dumps(custom)}, named
    assert [label for label, _ in table.rows] == ["value 3", "value 4"]  # in the file's order, as in the figure


def test_values_the_sweep_file_does_not_give_are_numbered_by_trial_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainlab.errors import ConfigError
    from trainlab.experiments.report import sweep_page

    long = [{"arch": "custom", "layers": [{"type": "linear", "out": n}] * 2} for n in (8, 16, 32)]
    record, parent = fake_sweep(monkeypatch, "model", [], [(0, long[2], 0.90), (1, long[0], 0.95),
                                                          (2, long[1], 0.97)])

    def no_sweep_file(row: object, path: str) -> object:
        raise ConfigError(f"run sweep-x has no artifact {path!r}")

    record.json_artifact = no_sweep_file  # type: ignore[method-assign]
    page = sweep_page(record, parent)  # type: ignore[arg-type]
    section = next(s for s in page.sections if s.anchor == "params")
    table = next(t for t in section.tables if "model" in t.headers)
    assert [(label, cell["text"]) for label, cell in table.rows] == [
        ("value 1", json.dumps(long[2])), ("value 2", json.dumps(long[0])), ("value 3", json.dumps(long[1]))]


def drawn_at_page_resolution(fig):  # noqa: ANN201
    """The figure drawn as the page shows it (DPI pixels per inch); returns the renderer that drew it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from trainlab.plots import DPI

    FigureCanvasAgg(fig)
    fig.set_dpi(DPI)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


@pytest.mark.parametrize("values", [
    [0.9675, 0.97, 0.9725, 0.975, 0.9775, 0.98, 0.9825, 0.985],  # an EMA decay, finely spaced
    [0.123456, 0.2, 0.31, 0.4444, 0.5, 0.61, 0.7],
    [100_000.0, 250_000.0, 1_250_000.0, 2_000_000.0],
    [16, 32, 48, 64, 96, 128, 160, 192, 224, 256],
])
@pytest.mark.parametrize("kind", ["scatter", "strip"])  # a numeric hyperparameter; a categorical one (x: metric)
def test_numeric_hyperparameter_ticks_are_few_and_never_touch(values: list[float], kind: str) -> None:
    from trainlab import plots

    if kind == "scatter":
        fig = plots.scatter_figure({"trials": ([float(v) for v in values], [0.9] * len(values))}, "train.ema_decay",
                                   "val_accuracy", "val_accuracy against train.ema_decay",
                                   integer_x=all(isinstance(v, int) for v in values))
    else:
        fig = plots.strip_figure({'{"arch": "small"}': [float(values[0])], "value 4": [float(v) for v in values]},
                                 "val_accuracy", "val_accuracy by model (a dot per trial)")
    renderer = drawn_at_page_resolution(fig)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    labels = [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if t.get_text() and low <= x <= high]
    assert 2 <= len(labels) <= 6, [t.get_text() for t in labels]
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    gaps = [b.x0 - a.x1 for a, b in zip(boxes, boxes[1:])]
    assert min(gaps) >= 6, ([t.get_text() for t in labels], gaps)  # at least a character's width apart


def test_the_calibration_diagonal_is_drawn_above_the_histogram() -> None:
    import numpy as np

    from trainlab import plots

    counts = np.array([0, 0, 0, 1, 2, 4, 8, 20, 60, 905])  # most images at confidence 0.9-1.0
    fig = plots.reliability_figure(np.array([0.5, 0.7, 0.8, 0.9, 0.97]), np.array([0.45, 0.65, 0.78, 0.88, 0.98]),
                                   counts, 0.02)
    drawn_at_page_resolution(fig)
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    bars = [patch for ax in fig.axes for patch in ax.patches]
    assert len(bars) == len(counts) and {"perfectly calibrated", "this model"} <= set(lines)

    def order(artist) -> tuple[float, int, float]:  # noqa: ANN001
        """When it is drawn: its axes' place among the figure's axes, then its own place in its axes."""
        ax = artist.axes
        return (ax.get_zorder(), fig.axes.index(ax), artist.get_zorder())

    for name in ("perfectly calibrated", "this model"):
        line = lines[name]
        assert all(order(line) > order(bar) for bar in bars), (name, order(line), order(bars[0]))
        if line.axes is not bars[0].axes:  # above the bars: no background to hide them
            assert not line.axes.patch.get_visible() or line.axes.patch.get_alpha() == 0
