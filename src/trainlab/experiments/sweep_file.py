"""A sweep file's structure in W&B's sweep configuration format, as pydantic models: the fields, the parameters and
their distributions, each parameter as trainlab's ``Param``; and pydantic's report of a bad file as one line
(the field by its dotted path, the value seen, what is allowed). sweep_spec.py turns a valid file into a sweep."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictFloat, StrictInt, ValidationError, field_validator, model_validator

from trainlab.config import MONITOR_METRICS
from trainlab.redaction import redact

Method = Literal["grid", "random", "bayes"]
Distribution = Literal["constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                       "log_uniform_values", "q_log_uniform", "q_log_uniform_values"]
IGNORED_FIELDS = ("program", "command", "project", "entity", "description")  # W&B's, not a sweep's content
LAUNCHER = ("program", "command")  # how W&B's agent starts a trial; trainlab trains trials in-process
SUPPORTED: tuple[str, ...] = get_args(Distribution)
UNSUPPORTED = ("inv_log_uniform", "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal",
               "beta", "q_beta")
MAX_VALUES = 1000  # values listed for one parameter (each is checked against the config)

Count = Annotated[int, Strict(), Field(ge=1)]  # strict: a bool, 2.0 or "2" is not a count
Number = StrictInt | StrictFloat  # an int stays an int: whole-number bounds mean int_uniform
Step = Annotated[int, Strict(), Field(gt=0)] | Annotated[float, Strict(), Field(gt=0)]


@dataclass(frozen=True)
class Param:
    """One swept config key and the values it may take."""

    key: str  # dotted config key, or a whole section ("model")
    kind: Literal["fixed", "choice", "int", "float"]
    choices: tuple[Any, ...] = ()  # fixed: the one value; choice: the candidates (any YAML value)
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    q: float | None = None  # round sampled values to a multiple of q

    def grid_count(self) -> int:
        """How many values a grid search walks through (counted, not listed: a range may hold billions)."""
        if self.kind in ("fixed", "choice"):
            return len(self.choices)
        if self.kind == "int":
            return len(range(int(self.low), int(self.high) + 1, int(self.q or 1)))
        return math.floor((self.high - self.low) / self.q + 1e-9) + 1  # type: ignore[operator]

    def grid_value(self, index: int) -> Any:
        """The grid's ``index``-th value of this parameter."""
        if self.kind in ("fixed", "choice"):
            return self.choices[index]
        if self.kind == "int":
            return int(self.low) + index * int(self.q or 1)
        return round(self.low + index * self.q, 12)  # type: ignore[operator]

    def grid_values(self) -> list[Any]:
        """The values a grid search walks through."""
        return [self.grid_value(i) for i in range(self.grid_count())]


# -- the file's structure, as pydantic models -------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metric(_Strict):
    name: str = Field(description=f"a validation metric every epoch logs: {', '.join(MONITOR_METRICS)}")
    goal: Literal["maximize", "minimize"] | None = None  # default: minimize val_loss, maximize the others
    target: Any = Field(None, exclude=True)  # W&B's (stop the sweep at this value): accepted, not used

    @field_validator("name")
    @classmethod
    def _logged_every_epoch(cls, name: str) -> str:
        if name not in MONITOR_METRICS:
            hint = (" (the test split is for reporting, never for choosing: sweeps select on validation)"
                    if name.startswith("test_") else "")
            raise ValueError(f"not a metric the runs log every epoch{hint}; choose one of {', '.join(MONITOR_METRICS)}")
        return name


class Hyperband(_Strict):
    type: Literal["hyperband"] = Field(description="only {type: hyperband, min_iter, max_iter, eta} is supported")
    min_iter: Count | None = Field(None, description="a whole number of epochs")
    max_iter: Count | None = Field(None, description="a whole number of epochs")
    eta: Count | None = Field(None, description="a whole number: each bracket keeps 1/eta of its trials")
    s: Any = Field(None, exclude=True)  # W&B's, accepted: Optuna's HyperbandPruner picks the brackets
    strict: Any = Field(None, exclude=True)


class ParamSpec(_Strict):
    """One entry of ``parameters``: the values a config key may take, or a section of nested ``parameters``."""

    values: list[Any] | None = Field(None, strict=True, min_length=1, max_length=MAX_VALUES, description=(
        f"1 to {MAX_VALUES:,} candidates; for more, give a range (min, max and a distribution; q for a grid)"))
    value: Any = None
    min: Number | None = None
    max: Number | None = None
    distribution: Distribution | None = None
    q: Step | None = Field(None, description="the step that sampled values are rounded to, e.g. q: 0.01")
    parameters: dict[str, ParamSpec] = Field(default_factory=dict, description=(
        "a mapping of config keys to {values: [...]} or {min: .., max: ..}"))
    # W&B's fields for what trainlab refuses: probabilities (below), and the unbounded distributions' parameters
    probabilities: Any = Field(None, exclude=True)
    mu: Any = Field(None, exclude=True)
    sigma: Any = Field(None, exclude=True)
    a: Any = Field(None, exclude=True)
    b: Any = Field(None, exclude=True)

    @field_validator("distribution", mode="before")
    @classmethod
    def _bounded(cls, distribution: Any) -> Any:
        if distribution in UNSUPPORTED:
            raise ValueError(f"not supported (trainlab samples bounded ranges); use one of {', '.join(SUPPORTED)}")
        return distribution or None  # none given: inferred from the other fields

    @field_validator("probabilities")
    @classmethod
    def _no_probabilities(cls, probabilities: Any) -> Any:
        raise ValueError("not supported; list a value more than once to favour it")

    @property
    def kind(self) -> str:
        if self.distribution:
            return self.distribution
        if "value" in self.model_fields_set:
            return "constant"
        if "values" in self.model_fields_set:
            return "categorical"
        return "int_uniform" if _all_int(self.min, self.max) else "uniform"

    @model_validator(mode="after")
    def _has_what_its_distribution_needs(self) -> ParamSpec:
        kind, low, high = self.kind, self.min, self.max
        if "parameters" in self.model_fields_set:
            return self  # a section: its own parameters are checked one by one
        if kind == "constant" and "value" not in self.model_fields_set:
            raise ValueError("distribution constant needs 'value'")
        if kind == "categorical" and self.values is None:
            raise ValueError("distribution categorical needs 'values', a list, e.g. 'values: [small, fast]'")
        if kind in ("constant", "categorical"):
            return self
        if low is None or high is None:
            raise ValueError(f"distribution {kind} needs numbers min and max (got min={low!r}, max={high!r})")
        if low > high:
            raise ValueError(f"min {low} is greater than max {high}; swap them")
        if kind.startswith("q_") and self.q is None:
            raise ValueError(f"distribution {kind} needs q, the step values are rounded to (a number above 0)")
        if kind == "int_uniform" and not _all_int(low, high):
            raise ValueError(f"int_uniform needs whole numbers (got {low}, {high})")
        if kind in ("log_uniform_values", "q_log_uniform", "q_log_uniform_values") and low <= 0:
            raise ValueError(f"{kind} needs min > 0 (got {low})")
        return self

    def params(self, key: str) -> list[Param]:
        """This entry as trainlab's parameters: itself, or its section's, keys prefixed with ``key``."""
        if "parameters" in self.model_fields_set:
            return [p for name, spec in self.parameters.items() for p in spec.params(f"{key}.{name}")]
        kind, low, high, q = self.kind, self.min, self.max, self.q
        if kind == "constant":
            return [Param(key, "fixed", (self.value,))]
        if kind == "categorical":
            return [Param(key, "choice", tuple(self.values or ()))]
        assert low is not None and high is not None  # checked above
        if kind == "int_uniform":
            return [Param(key, "int", low=low, high=high)]
        if kind == "log_uniform":  # W&B: min and max are natural-log exponents
            return [Param(key, "float", low=math.exp(low), high=math.exp(high), log=True, q=q)]
        log = kind.startswith(("log", "q_log"))
        return [Param(key, "float", low=float(low), high=float(high), log=log, q=q)]


class SweepFile(_Strict):
    """A sweep file as written (see the module's docstring); W&B's launcher and project fields are accepted."""

    method: Method = Field(description="bayes is Optuna's TPE")
    metric: Metric = Field(description="write e.g. 'metric: {name: val_accuracy, goal: maximize}'")
    parameters: dict[str, ParamSpec] = Field(description=(
        "a mapping of config keys to {values: [...]} or {min: .., max: ..}, e.g. 'model.arch: {values: [small, fast]}'"))
    early_terminate: Hyperband | None = Field(None, description=(
        "only {type: hyperband, min_iter, max_iter, eta} is supported"))
    run_cap: Count | None = Field(None, description="a whole number: the most configurations (trials) to run")
    name: Any = None
    seeds: Count | None = Field(None, description="a whole number: runs of every configuration, one per seed")
    time_budget: Annotated[float, Strict(), Field(gt=0)] | None = Field(None, description=(
        "seconds of trial time, summed over workers"))
    pruner: Literal["none", "median", "asha"] | None = Field(None, description="instead of early_terminate")
    seed: int = Field(0, description="a whole number: seeds the sampler")
    program: Any = None
    command: Any = None
    project: Any = None
    entity: Any = None
    description: Any = None

    @field_validator("metric", mode="before")
    @classmethod
    def _a_name_alone(cls, metric: Any) -> Any:
        return {"name": metric} if isinstance(metric, str) else metric

    @model_validator(mode="after")
    def _ends(self) -> SweepFile:
        if self.pruner is not None and self.early_terminate is not None:
            raise ValueError("the sweep sets both pruner and early_terminate; keep one")
        if self.method != "grid" and self.run_cap is None and self.time_budget is None:
            raise ValueError(f"method {self.method} samples without end: set run_cap (configurations) and/or "
                             "time_budget (seconds)")
        return self


def _all_int(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


# -- pydantic's report as one line -------------------------------------------------------------------------------------

_PARAM_HINT = "give it as {values: [...]}, {value: ...} or {min: ..., max: ...}"
_NUMBER_BRANCHES = ("int", "float", "constrained-int", "constrained-float")  # pydantic's names for Number's, Step's


def one_line(exc: ValidationError) -> str:
    """Every problem pydantic found, on one line: the field (a parameter by its dotted config key), the value seen
    (credentials masked, long values cut), and what is allowed or the fix."""
    by_loc: dict[tuple[str, ...], list[Any]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(str(part) for part in err["loc"])
        if len(loc) > 1 and loc[-1] in _NUMBER_BRANCHES and loc[-2] in ("min", "max", "q"):
            loc = loc[:-1]  # one branch of Number: say it once, as "a number"
            if err["type"] in ("int_type", "float_type"):
                err = {**err, "msg": "Input should be a number"}
        by_loc.setdefault(loc, []).append(err)
    problems: list[str] = []
    for loc, errs in by_loc.items():
        # of a union's branches, the error of the branch of the right type (0 for q: "greater than 0")
        for err in [e for e in errs if not e["type"].endswith("_type")] or errs[:1]:
            if (text := _problem(loc, err)) not in problems:
                problems.append(text)
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return " | ".join(problems[:3]) + more


def _problem(loc: tuple[str, ...], err: Any) -> str:
    keys: list[str] = []  # a parameter's dotted key, nested sections joined
    rest = loc
    while len(rest) >= 2 and rest[0] == "parameters":
        keys, rest = [*keys, rest[1]], rest[2:]
    model: type[BaseModel] = (ParamSpec if keys else Metric if rest[:1] == ("metric",) and len(rest) > 1
                              else Hyperband if rest[:1] == ("early_terminate",) and len(rest) > 1 else SweepFile)
    where = f"sweep parameter {'.'.join(keys)}" if keys else "sweep"
    if rest == ("[key]",):  # YAML read `1:` or `null:` as a name
        return f"{where}: the name {_shown(err['input'])} is not text; name a config key, e.g. 'model.arch'"
    if err["type"] == "extra_forbidden":
        valid = ", ".join(name for name, f in model.model_fields.items() if not f.exclude)
        inside = " ".join([where, ".".join(rest[:-1])]).strip()
        said = f"unknown sweep key {rest[-1]!r}" if inside == "sweep" else f"unknown key {rest[-1]!r} in {inside}"
        return f"{said}; the valid keys are {valid}"
    subject = f"{where}: {'.'.join(rest)}" if keys and rest else f"{where} {'.'.join(rest)}" if rest else where
    msg = re.sub(r" or instance of \w+| after validation", "", err["msg"].removeprefix("Value error, "))
    if err["type"] == "value_error":  # ours: the message names the problem and the fix
        return f"{subject} = {_shown(err['input'])}: {msg}" if rest else f"{subject}: {msg}" if keys or rest else msg
    info = model.model_fields.get(rest[-1]) if rest else None
    hint = _PARAM_HINT if keys and not rest else info.description if info and info.description else ""
    if err["type"] == "list_type":
        hint = f"write it as a list, e.g. '{rest[-1]}: [{_shown(err['input']).strip(chr(39))}]'"
    hint = f"; {hint}" if hint else ""
    if err["type"] == "missing":
        allowed = get_args(info.annotation) if info and get_origin(info.annotation) is Literal else ()
        return f"{subject} is required{': one of ' + ', '.join(allowed) if allowed else ''}{hint}"
    return f"{subject} = {_shown(err['input'])}: {msg[:1].lower()}{msg[1:]}{hint}"


def _shown(value: Any) -> str:
    """``value`` as a message shows it: credentials masked (before cutting: a cut could split one), at most ~80
    characters."""
    text = redact(repr(value))
    if len(text) <= 80:
        return text
    count = f" ({len(value):,} items)" if isinstance(value, (list, dict)) else ""
    return f"{text[:60]}...{count}"
