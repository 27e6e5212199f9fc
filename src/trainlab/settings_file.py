"""Reading a YAML or JSON settings file (a run config, a sweep file) or text (an override) safely: one line,
never a parser's crash, for a file that is missing, not a file, huge, binary, nested or expanding without end,
or not valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from trainlab.errors import ConfigError, SettingsSyntaxError

MAX_SETTINGS_BYTES = 1_000_000  # a config or sweep file is a few KB; past this it is data or an attack
MAX_NESTING = 64  # levels of brackets, or of `- ` on one line; far past any config, far below libyaml's stack
MAX_VALUES = 200_000  # values a file may expand to, aliases counted each time they are used ("billion laughs")


def read_settings_file(path: Path, what: str, start: str) -> dict[str, Any]:
    """A YAML or JSON file that must hold a mapping, refused in one line if it is missing, huge, binary, nested
    without end or not valid; ``what`` names it ("config file"), ``start`` says how a good one begins."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a folder; pass a .yaml or .json file")
    if not path.exists():
        raise ConfigError(f"{what} {str(path)!r} does not exist; pass an existing .yaml or .json file")
    if not path.is_file():  # a FIFO would block the read, /dev/zero never end it
        raise ConfigError(f"{what} {str(path)!r} is not a regular file; pass a .yaml or .json file")
    size = path.stat().st_size
    if size > MAX_SETTINGS_BYTES:
        raise ConfigError(f"{what} {str(path)!r} is {size / 1e6:.1f} MB; a {what} is at most "
                          f"{MAX_SETTINGS_BYTES // 1_000_000} MB (list values, do not generate them)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not text (byte {exc.start} is not UTF-8); pass a YAML or "
                          "JSON file") from None
    return _mapping(parse_settings_text(text, f"{what} {str(path)!r}", strict_json=path.suffix == ".json"),
                    f"{what} {str(path)!r}", start)


def parse_settings_text(text: str, what: str, strict_json: bool = False) -> Any:
    """YAML or JSON text as plain values, refused in one line (``what`` names it) where it nests deeper than a
    parser's stack, expands without end through aliases, or is not valid."""
    if _nesting(text) > MAX_NESTING:
        raise ConfigError(f"{what} nests over {MAX_NESTING} levels deep; flatten it (a sweep or config needs a few)")
    try:
        raw = _parse_settings(text, strict_json)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if strict_json else "YAML or JSON"
        raise SettingsSyntaxError(f"{what} is not valid {kind}: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{what} nests its sections too deep to read; flatten it") from None
    if _expands_past(raw, MAX_VALUES):
        raise ConfigError(f"{what} expands to over {MAX_VALUES:,} values (YAML aliases count each time they are "
                          "used); write the values out, a sweep or config needs a few hundred")
    return raw


def _mapping(raw: Any, what: str, start: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} holds a {type(raw).__name__}, not a mapping; {start}")
    return raw


def _nesting(text: str) -> int:
    """A bound on how deep ``text`` nests, up to just past MAX_NESTING: the deepest [ and { (quotes are not
    parsed), or the most block indicators (`- `, `? `, `: `) opening one line."""
    indicators = max((len(m.group(1).split()) for m in re.finditer(r"^[ \t]*((?:[-?:][ \t]+)+)", text, re.M)),
                     default=0)
    if indicators > MAX_NESTING or text.count("[") + text.count("{") <= MAX_NESTING:
        return indicators
    opened = re.sub(r"[^\[\]{}]", "", text).replace("{", "[").replace("}", "]")
    depth = deepest = 0
    for char in opened:
        depth += 1 if char == "[" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            break
    return max(deepest, indicators)


def _expands_past(raw: Any, limit: int) -> bool:
    """Whether walking ``raw`` (shared lists and mappings visited each time they are reached) passes ``limit``."""
    stack, seen = [raw], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _parse_settings(text: str, strict_json: bool) -> Any:
    """JSON with json (fast on a big file), else YAML with libyaml's loader where it is built in."""
    if strict_json:
        return json.loads(text)
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style, which looks like JSON
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
