"""Sweep files in W&B's sweep configuration format, validated against the run config.

A team's existing W&B sweep file runs offline unchanged, except that parameter
names are trainlab's config keys (dotted, or nested under ``parameters``)::

    method: bayes                          # grid | random | bayes (Optuna's TPE)
    metric: {name: val_accuracy, goal: maximize}
    parameters:
      model.arch: {values: [small, fast]}
      train:
        parameters:
          optimizer:
            parameters:
              lr: {min: 0.0001, max: 0.01, distribution: log_uniform_values}
    early_terminate: {type: hyperband, min_iter: 1, eta: 3}
    run_cap: 20
    # trainlab's own additions
    seeds: 3                               # every configuration with 3 seeds; the objective is their mean
    time_budget: 600                       # seconds of trial time, summed over workers
                                           # (a killed attempt is not counted: it runs again)
    pruner: median                         # median | asha | none (instead of early_terminate)

``program`` and ``command`` (W&B's launcher fields) are ignored, and said so.
Every candidate value is checked against the run config before any trial runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictFloat, StrictInt, ValidationError, field_validator, model_validator

from trainlab.config import MONITOR_METRICS, set_dotted, validate_config
from trainlab.errors import ConfigError
from trainlab.redaction import redact, redact_mapping
from trainlab.settings_file import read_settings_file

Method = Literal["grid", "random", "bayes"]
Distribution = Literal["constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                       "log_uniform_values", "q_log_uniform", "q_log_uniform_values"]
IGNORED_FIELDS = ("program", "command", "project", "entity", "description")  # W&B's, not a sweep's content
LAUNCHER = ("program", "command")  # how W&B's agent starts a trial; trainlab trains trials in-process
SUPPORTED: tuple[str, ...] = get_args(Distribution)
UNSUPPORTED = ("inv_log_uniform", "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal",
               "beta", "q_beta")
MAX_GRID_POINTS = 1000
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


@dataclass(frozen=True)
class SweepSpec:
    name: str
    method: Method
    metric: str  # a validation metric every epoch logs
    goal: Literal["maximize", "minimize"]
    params: tuple[Param, ...]
    run_cap: int | None  # configurations (trials); each runs `seeds` times
    time_budget: float | None  # seconds of trial time, summed over workers (a killed attempt is not counted: it runs again)
    seeds: int
    pruner: Literal["none", "median", "asha", "hyperband"]
    pruner_settings: dict[str, float] = field(default_factory=dict)  # hyperband: min_iter, max_iter, eta
    sampler_seed: int = 0
    ignored: tuple[str, ...] = ()  # W&B fields that trainlab cannot honour
    source: dict[str, Any] = field(default_factory=dict)  # the file as written

    @property
    def grid_size(self) -> int | None:
        if self.method != "grid":
            return None
        return math.prod(p.grid_count() for p in self.params)

    @property
    def trial_cap(self) -> int | None:
        """How many configurations the sweep runs at most (None: until the time budget)."""
        caps = [c for c in (self.run_cap, self.grid_size) if c is not None]
        return min(caps) if caps else None



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
    q: Step | None = Field(None, description="the step sampled values are rounded to")
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


# -- reading and checking a sweep file --------------------------------------------------------------------------------


def load_sweep(path: Path, base: dict[str, Any]) -> SweepSpec:
    """Read and validate a sweep file against ``base``, the run config every trial starts from."""
    raw = read_settings_file(path, "sweep file", "start it with 'method:', 'metric:' and 'parameters:'")
    return parse_sweep(raw, base, default_name=Path(path).stem)


def parse_sweep(raw: dict[str, Any], base: dict[str, Any], default_name: str = "sweep") -> SweepSpec:
    try:
        file = SweepFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(one_line(exc)) from None
    params = tuple(p for key, spec in file.parameters.items() for p in spec.params(key))
    if not params:
        raise ConfigError("sweep parameters is empty; name at least one config key to vary, e.g. "
                          "'model.arch: {values: [small, fast]}'")
    for param in params:
        _check_against_config(param, base)
        _check_no_credential(param)
    early = file.early_terminate
    metric = file.metric
    spec = SweepSpec(
        name=redact(str(file.name or default_name)), method=file.method, metric=metric.name,
        goal=metric.goal or ("minimize" if metric.name == "val_loss" else "maximize"), params=params,
        run_cap=file.run_cap, time_budget=file.time_budget, seeds=file.seeds or 1,
        pruner="hyperband" if early else file.pruner or "none",
        pruner_settings=early.model_dump(include={"min_iter", "max_iter", "eta"}, exclude_none=True) if early else {},
        sampler_seed=file.seed, ignored=tuple(k for k in IGNORED_FIELDS if k in raw),
        # as stored in the study, the sweep's run and W&B: W&B's launcher fields left out (their argv may hold
        # a token), a credential in any other field masked
        source={k: v if k == "parameters" else redact_mapping(v, k) for k, v in raw.items() if k not in LAUNCHER},
    )
    _check_grid(spec)
    return spec


def sweep_params(parameters: Any) -> list[Param]:
    """A sweep file's ``parameters`` section as trainlab's parameters (not checked against a run config)."""
    try:
        section = ParamSpec.model_validate({"parameters": parameters})  # errors located as in a whole file
    except ValidationError as exc:
        raise ConfigError(one_line(exc)) from None
    return [p for key, spec in section.parameters.items() for p in spec.params(key)]


def _check_grid(spec: SweepSpec) -> None:
    """A grid is walked point by point: every parameter needs a finite list, and a huge grid a cap."""
    if spec.method != "grid":
        return
    for p in spec.params:
        if p.kind == "float" and p.q is None:
            raise ConfigError(f"sweep parameter {p.key}: grid search needs a finite list of values; give "
                              "'values: [...]', or a q_uniform distribution with q")
    if (spec.grid_size or 0) > MAX_GRID_POINTS and spec.run_cap is None:
        raise ConfigError(f"the grid has {spec.grid_size:,} configurations; set run_cap, or use "
                          "method: random or bayes")


def _check_no_credential(param: Param) -> None:
    """A swept value is stored in the study and shown beside every trial: it may not hold a credential."""
    for value in param.choices:
        if redact_mapping(value, param.key) != value:
            shown = json.dumps(redact_mapping(value, param.key), default=str)[:120]
            raise ConfigError(f"sweep parameter {param.key}: the value {shown} holds a credential (masked here); a "
                              "swept value is stored in the study and shown with every trial: put the credential in "
                              "the base config or the environment, where every record masks it")



def sweep_id(spec: SweepSpec, base: dict[str, Any]) -> str:
    """The same sweep file on the same base config is the same sweep: running it again resumes it."""
    digest = hashlib.sha256(json.dumps([spec.source, base], sort_keys=True, default=str).encode()).hexdigest()
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in spec.name)[:40]
    return f"sweep-{safe}-{digest[:8]}"


def check_sweep_id(text: str) -> str:
    """A sweep id as ``sweep_id`` makes them (it names a folder: no separator, no ``..``), else one line."""
    if not re.fullmatch(r"[\w-]{1,80}", text):
        shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"
        raise ConfigError(f"sweep id {shown!r} is not one trainlab makes (letters, digits, - and _, as "
                          "`sweep-NAME-1a2b3c4d`); copy it from the sweep's first line or `trainlab runs`")
    return text


def apply_params(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a plain config dict) with every swept key set; sections given as mappings are replaced whole."""
    raw = json.loads(json.dumps(base))  # a deep copy of plain values
    for key, value in values.items():
        set_dotted(raw, key, value)
    return raw


def _check_against_config(param: Param, base: dict[str, Any]) -> None:
    """Every candidate (each choice, both ends of a range) must give a valid run config."""
    candidates = param.choices if param.kind in ("fixed", "choice") else (param.low, param.high)
    for value in candidates:
        value = int(value) if param.kind == "int" else value
        try:
            validate_config(apply_params(base, {param.key: value}))
        except ConfigError as exc:
            detail = str(exc).removeprefix("invalid config: ")
            raise ConfigError(f"sweep parameter {param.key} = {value!r} does not make a valid run config: "
                              f"{detail}") from None



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
