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

from pydantic import ValidationError

from trainlab.config import set_dotted, validate_config
from trainlab.errors import ConfigError
from trainlab.experiments.sweep_file import IGNORED_FIELDS, LAUNCHER, Method, Param, ParamSpec, SweepFile, one_line
from trainlab.redaction import redact, redact_mapping
from trainlab.settings_file import read_settings_file

MAX_GRID_POINTS = 1000

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
