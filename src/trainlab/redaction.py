"""Keep secrets out of everything trainlab writes or prints.

Secrets are the values of credential variables in the environment (API keys,
tokens, passwords), and the user:password part of URLs. ``redact`` masks both;
it is applied to params, tags, error messages, warnings and recorded text.
"""

from __future__ import annotations

import os
import re

SECRET_VARIABLES = (
    "WANDB_API_KEY",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "DATABRICKS_TOKEN",
)
MASK = "***"
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def secret_values() -> list[str]:
    # short values would mask ordinary words; real keys and tokens are long
    return [v for name in SECRET_VARIABLES if len(v := os.environ.get(name, "")) >= 8]


def redact(text: str) -> str:
    """``text`` with secret values and URL credentials replaced by ***."""
    for value in secret_values():
        text = text.replace(value, MASK)
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", text)
