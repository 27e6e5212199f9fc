"""Keep secrets out of everything trainlab writes or prints.

A secret is any of:
- the value of a credential variable in the environment (WANDB_API_KEY, tokens, passwords);
- the ``user:password@`` part of a URL, wherever the URL appears;
- the value of a key named like ``*key*``, ``*token*``, ``*secret*``, ``*password*`` (``?token=...`` in a
  URL, ``api_key: ...`` in a file, a config mapping's entry, ``--token VALUE`` in a command written as text).

``redact`` masks them in text, ``redact_mapping`` in nested config values. Strings that become
identifiers (experiment names, folder names) are refused instead: see ``holds_secret``.
"""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_VARIABLES = (
    "WANDB_API_KEY",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "DATABRICKS_TOKEN",
    "HF_TOKEN",
    "GITHUB_TOKEN",
)
MASK = "***"
# a secret word starts a name or a part of it (api_key, WANDB_API_KEY, authToken, apikey), not the end of an
# ordinary word: monkey=1, turkey=2024/ and hockey stay (a Hive-style folder name kept whole, so the path works)
_GLUED = r"(?:api|auth|access|refresh|session|client|private|secret|bearer|ssh|db|admin|user|my)"
_WORD = r"(?:key|token|secret|passw(?:or)?d|pwd|credentials?)"
_SECRET_WORD = (rf"(?:(?<![a-z]){_GLUED}?{_WORD}|(?<![A-Z]){_GLUED.upper()}?{_WORD.upper()}"
                rf"|{_GLUED.capitalize()}?(?:Key|Token|Secret|Passw(?:or)?d|Pwd|Credentials?))")
_SECRET_NAME = rf"[A-Za-z0-9_.-]*?{_SECRET_WORD}[A-Za-z0-9_.-]*"
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
# name=value, name: value, "name": "value" (a query string, an env file, YAML, JSON); a quoted name takes a
# quoted value only, so a message quoting a word that holds "key" ('monkey': input should be ...) keeps its words
_NAMED_VALUE = re.compile(
    rf"(?P<name>\b{_SECRET_NAME})(?P<sep>[\"']\s*[=:]\s*[\"']|\s*[=:]\s*[\"']?)(?P<value>[^\s&;,\"'}}\]]+)")
_SECRET_KEY = re.compile(rf"^{_SECRET_NAME}$")
_SECRET_FLAG = re.compile(rf"^--?{_SECRET_NAME}$")
# a command line written as text: `--token VALUE`, `-password VALUE`
_FLAG_VALUE = re.compile(rf"(?P<name>(?<![\w-])--?{_SECRET_NAME})(?P<sep>\s+)"
                         r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s\"'-][^\s\"']*)")


def secret_values() -> list[str]:
    # short values would mask ordinary words; real keys and tokens are long
    return [v for name in SECRET_VARIABLES if len(v := os.environ.get(name, "")) >= 8]


PLACEHOLDERS = frozenset({MASK, "value", "<value>", "..."})  # help text's `key=value` is not a credential


def _mask_named(match: re.Match[str]) -> str:
    value = match["value"]
    return match[0] if value.lower() in PLACEHOLDERS else f"{match['name']}{match['sep']}{MASK}"


def redact(text: str) -> str:
    """``text`` with secret values, URL credentials and the values of secret-named keys replaced by ***."""
    for value in secret_values():
        text = text.replace(value, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _NAMED_VALUE.sub(_mask_named, text)
    return _FLAG_VALUE.sub(_mask_named, text)


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.match(name.rsplit(".", 1)[-1]))


def redact_mapping(data: Any, key: str = "") -> Any:
    """A copy of nested dicts / lists with every secret masked: values of secret-named keys, and text."""
    if isinstance(data, dict):
        return {k: redact_mapping(v, str(k)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):  # an argv-like list: the item after `--token` / `--password` is masked
        flags = [isinstance(v, str) and bool(_SECRET_FLAG.match(v)) for v in data]
        return [MASK if i and flags[i - 1] and isinstance(v, str) and v not in ("", MASK) else redact_mapping(v, key)
                for i, v in enumerate(data)]
    if key and is_secret_key(key) and data not in (None, "", MASK):
        return MASK
    return redact(data) if isinstance(data, str) else data


def holds_secret(text: str) -> bool:
    return redact(text) != text
