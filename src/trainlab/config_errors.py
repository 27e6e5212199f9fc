"""pydantic's report of an invalid config as one line: each problem with its field (dotted), the value seen
and what is allowed; an unknown key with the valid keys beside it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from trainlab.config_layers import LAYER_TYPES


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem, joined: field, value seen, what is allowed."""
    problems = []
    for err in exc.errors(include_url=False):
        raw_loc = err["loc"]
        loc = [str(p) for i, p in enumerate(raw_loc) if not (i and isinstance(raw_loc[i - 1], int) and _is_union_tag(p))]
        field = ".".join(loc) or "config"
        if err["type"] == "extra_forbidden":
            valid = ", ".join(_valid_keys(root, loc[:-1]))
            problems.append(f"unknown config key {field!r}; valid keys there: {valid}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            problems.append(
                f"{field}.type = {err['ctx']['tag']!r}: must be one of {err['ctx']['expected_tags']}"
            )
        elif err["type"] == "value_error":
            problems.append(msg if not loc or loc[-1] in msg else f"{field}: {msg}")
        elif err["type"] == "missing":
            problems.append(f"{field} is required")
        else:
            problems.append(f"{field} = {err['input']!r}: {msg[0].lower()}{msg[1:]}")
    return "invalid config: " + "; ".join(problems)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the discriminator value (e.g. 'conv') into error locations, after the layer's index
    return part in LAYER_TYPES


def _valid_keys(root: type[BaseModel], loc: list[str]) -> list[str]:
    model = root
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            break
    return list(model.model_fields)
