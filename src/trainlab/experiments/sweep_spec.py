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
from typing import Any, Literal

from trainlab.config import MONITOR_METRICS, set_dotted, validate_config
from trainlab.errors import ConfigError
from trainlab.redaction import redact, redact_mapping
from trainlab.settings_file import read_settings_file

Method = Literal["grid", "random", "bayes"]
IGNORED_FIELDS = ("program", "command", "project", "entity", "description")  # W&B's, not a sweep's content
LAUNCHER = ("program", "command")  # how W&B's agent starts a trial; trainlab trains trials in-process
TOP_LEVEL = ("method", "metric", "parameters", "early_terminate", "run_cap", "name", "seeds", "time_budget",
             "pruner", "seed", *IGNORED_FIELDS)
PARAM_FIELDS = ("values", "value", "min", "max", "distribution", "q", "parameters")
SUPPORTED = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
             "log_uniform_values", "q_log_uniform", "q_log_uniform_values")
UNSUPPORTED = ("inv_log_uniform", "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal",
               "beta", "q_beta")
MAX_GRID_POINTS = 1000
MAX_VALUES = 1000  # values listed for one parameter (each is checked against the config)


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


def load_sweep(path: Path, base: dict[str, Any]) -> SweepSpec:
    """Read and validate a sweep file against ``base``, the run config every trial starts from."""
    raw = read_settings_file(path, "sweep file", "start it with 'method:', 'metric:' and 'parameters:'")
    return parse_sweep(raw, base, default_name=Path(path).stem)


def parse_sweep(raw: dict[str, Any], base: dict[str, Any], default_name: str = "sweep") -> SweepSpec:
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"unknown sweep key {unknown[0]!r}; the valid keys are {', '.join(TOP_LEVEL)}")
    method = raw.get("method")
    if method not in ("grid", "random", "bayes"):
        raise ConfigError(f"sweep method = {method!r}: must be grid, random or bayes (bayes is Optuna's TPE)")
    metric, goal = _metric(raw.get("metric"))
    params = tuple(_flatten(raw.get("parameters"), ""))
    if not params:
        raise ConfigError("sweep parameters is empty; name at least one config key to vary, e.g. "
                          "'model.arch: {values: [small, fast]}'")
    for param in params:
        _check_against_config(param, base)
        _check_no_credential(param)
    run_cap = _positive_int(raw.get("run_cap"), "run_cap")
    seeds = _positive_int(raw.get("seeds", 1), "seeds") or 1
    time_budget = _positive_number(raw.get("time_budget"), "time_budget")
    pruner, settings = _pruner(raw.get("pruner"), raw.get("early_terminate"))
    spec = SweepSpec(
        name=redact(str(raw.get("name") or default_name)), method=method, metric=metric, goal=goal, params=params,
        run_cap=run_cap, time_budget=time_budget, seeds=seeds, pruner=pruner, pruner_settings=settings,
        sampler_seed=int(raw.get("seed", 0)), ignored=tuple(k for k in IGNORED_FIELDS if k in raw),
        # as stored in the study, the sweep's run and W&B: W&B's launcher fields left out (their argv may hold
        # a token), a credential in any other field masked
        source={k: v if k == "parameters" else redact_mapping(v, k) for k, v in raw.items() if k not in LAUNCHER},
    )
    if method == "grid":
        for p in params:
            if p.kind == "float" and p.q is None:
                raise ConfigError(f"sweep parameter {p.key}: grid search needs a finite list of values; give "
                                  "'values: [...]', or a q_uniform distribution with q")
        if (spec.grid_size or 0) > MAX_GRID_POINTS and run_cap is None:
            raise ConfigError(f"the grid has {spec.grid_size:,} configurations; set run_cap, or use "
                              "method: random or bayes")
    elif run_cap is None and time_budget is None:
        raise ConfigError(f"method {method} samples without end: set run_cap (configurations) and/or "
                          "time_budget (seconds)")
    return spec


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


def _metric(metric: Any) -> tuple[str, Literal["maximize", "minimize"]]:
    if isinstance(metric, str):
        metric = {"name": metric}
    if not isinstance(metric, dict) or "name" not in metric:
        raise ConfigError("sweep metric is missing; write e.g. 'metric: {name: val_accuracy, goal: maximize}'")
    extra = sorted(set(metric) - {"name", "goal", "target"})
    if extra:
        raise ConfigError(f"unknown key {extra[0]!r} in sweep metric; the valid keys are name, goal")
    name = metric["name"]
    if name not in MONITOR_METRICS:
        hint = (" (the test split is for reporting, never for choosing: sweeps select on validation)"
                if str(name).startswith("test_") else "")
        raise ConfigError(f"sweep metric {name!r} is not a metric the runs log every epoch{hint}; choose one of "
                          f"{', '.join(MONITOR_METRICS)}")
    goal = metric.get("goal") or ("minimize" if name == "val_loss" else "maximize")
    if goal not in ("maximize", "minimize"):
        raise ConfigError(f"sweep metric goal = {goal!r}: must be maximize or minimize")
    return str(name), "maximize" if goal == "maximize" else "minimize"


def _flatten(parameters: Any, prefix: str) -> list[Param]:
    if not isinstance(parameters, dict):
        raise ConfigError(f"sweep parameters{' of ' + prefix.rstrip('.') if prefix else ''} must be a mapping of "
                          "config keys to {values: [...]} or {min: .., max: ..}")
    out: list[Param] = []
    for name, spec in parameters.items():
        key = f"{prefix}{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"sweep parameter {key} = {spec!r}: give it as {{values: [...]}}, {{value: ...}} or "
                              "{min: ..., max: ...}")
        unknown = sorted(set(spec) - set(PARAM_FIELDS) - {"probabilities", "mu", "sigma", "a", "b"})
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in sweep parameter {key}; the valid keys are "
                              f"{', '.join(PARAM_FIELDS)}")
        if "parameters" in spec:
            out += _flatten(spec["parameters"], f"{key}.")
        else:
            out.append(_param(key, spec))
    return out


def _param(key: str, spec: dict[str, Any]) -> Param:
    kind = spec.get("distribution") or ("constant" if "value" in spec else "categorical" if "values" in spec
                                        else "int_uniform" if _all_int(spec.get("min"), spec.get("max"))
                                        else "uniform")
    if kind in UNSUPPORTED:
        raise ConfigError(f"sweep parameter {key}: distribution {kind!r} is not supported (trainlab samples bounded "
                          f"ranges); use one of {', '.join(SUPPORTED)}")
    if kind not in SUPPORTED:
        raise ConfigError(f"sweep parameter {key}: unknown distribution {kind!r}; use one of {', '.join(SUPPORTED)}")
    if "probabilities" in spec:
        raise ConfigError(f"sweep parameter {key}: probabilities are not supported; list a value more than once "
                          "to favour it")
    if kind == "constant":
        if "value" not in spec:
            raise ConfigError(f"sweep parameter {key}: distribution constant needs 'value'")
        return Param(key, "fixed", (spec["value"],))
    if kind == "categorical":
        values = spec.get("values")
        if not isinstance(values, list):
            raise ConfigError(f"sweep parameter {key}: values is {values!r}, not a list; give a list, e.g. "
                              f"'values: [{values}]'")
        if not values:
            raise ConfigError(f"sweep parameter {key}: values is empty; list at least one value")
        if len(values) > MAX_VALUES:
            raise ConfigError(f"sweep parameter {key} lists {len(values):,} values; at most {MAX_VALUES:,}: give a "
                              "range instead (min, max and a distribution; q for a grid)")
        return Param(key, "choice", tuple(values))
    low, high = spec.get("min"), spec.get("max")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or isinstance(low, bool):
        raise ConfigError(f"sweep parameter {key}: distribution {kind} needs numbers min and max (got min={low!r}, "
                          f"max={high!r})")
    if low > high:
        raise ConfigError(f"sweep parameter {key}: min {low} is greater than max {high}; swap them")
    q = spec.get("q")
    if kind.startswith("q_") and (not isinstance(q, (int, float)) or q <= 0):
        raise ConfigError(f"sweep parameter {key}: distribution {kind} needs a positive q (got {q!r})")
    if kind == "int_uniform":
        if not _all_int(low, high):
            raise ConfigError(f"sweep parameter {key}: int_uniform needs whole numbers (got {low}, {high})")
        return Param(key, "int", low=low, high=high)
    if kind == "log_uniform":  # W&B: min and max are natural-log exponents
        return Param(key, "float", low=math.exp(low), high=math.exp(high), log=True, q=q)
    if kind.startswith(("log", "q_log")):
        if low <= 0:
            raise ConfigError(f"sweep parameter {key}: {kind} needs min > 0 (got {low})")
        return Param(key, "float", low=float(low), high=float(high), log=True, q=q)
    return Param(key, "float", low=float(low), high=float(high), q=q)


def _all_int(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


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


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"sweep {name} = {value!r}: must be a whole number of at least 1")
    return value


def _positive_number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"sweep {name} = {value!r}: must be a number of seconds above 0")
    return float(value)


def _pruner(pruner: Any, early_terminate: Any) -> tuple[Literal["none", "median", "asha", "hyperband"], dict]:
    if pruner is not None and early_terminate is not None:
        raise ConfigError("the sweep sets both pruner and early_terminate; keep one")
    if early_terminate is not None:
        if not isinstance(early_terminate, dict) or early_terminate.get("type") != "hyperband":
            raise ConfigError(f"early_terminate = {early_terminate!r}: only {{type: hyperband, min_iter, max_iter, "
                              "eta}} is supported")
        extra = sorted(set(early_terminate) - {"type", "min_iter", "max_iter", "eta", "s", "strict"})
        if extra:
            raise ConfigError(f"unknown key {extra[0]!r} in early_terminate; the valid keys are type, min_iter, "
                              "max_iter, eta")
        settings = {k: early_terminate[k] for k in ("min_iter", "max_iter", "eta") if k in early_terminate}
        for k, v in settings.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"early_terminate {k} = {v!r}: must be a whole number of at least 1 (epochs)")
        return "hyperband", settings
    if pruner is None:
        return "none", {}
    if pruner not in ("none", "median", "asha"):
        raise ConfigError(f"sweep pruner = {pruner!r}: must be median, asha or none")
    return pruner, {}
