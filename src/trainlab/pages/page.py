"""A report page's parts, and writing one: sections of figures, tables and image galleries, rendered by
``templates/report.html.j2`` into one HTML file that requests nothing (a Content-Security-Policy forbids it)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from trainlab import __version__
from trainlab.fileio import atomic_write_text

REPORT = "report.html"


@dataclass(frozen=True)
class Figure:
    uri: str  # data:image/png;base64,...
    alt: str
    caption: str = ""  # shown under a gallery's tile (the alt text when empty)


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Any]]  # a cell: text, {"href", "text"} a link, {"text", "wrap": True} long text, or a list of these
    caption: str = ""


@dataclass(frozen=True)
class Gallery:
    caption: str
    tiles: list[Figure]


@dataclass
class Section:
    title: str
    anchor: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    galleries: list[Gallery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Page:
    title: str
    subtitle: str
    facts: list[tuple[str, str]]
    sections: list[Section]
    config_text: str = ""
    verdict: str = ""
    notes: list[str] = field(default_factory=list)
    version: str = __version__
    generated: str = field(default_factory=lambda: datetime.now().strftime("%Y-%m-%d %H:%M"))


# -- writing ----------------------------------------------------------------------------------------------


def render(page: Page) -> str:
    from jinja2 import Environment, PackageLoader

    # every value on a page comes from a record someone else may have written: always escaped
    env = Environment(loader=PackageLoader("trainlab.pages", "templates"), autoescape=True)
    return env.get_template("report.html.j2").render(page=page)


def write_page(page: Page, path: Path) -> tuple[Path, float]:
    """Render and write atomically; returns the path and the seconds it took."""

    started = time.perf_counter()
    html = render(page)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path, time.perf_counter() - started


def short(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[:width - 1] + "…"
