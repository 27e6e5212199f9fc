"""Weights & Biases, mirroring every run through the official ``wandb`` client.

Online when a key is available (``WANDB_API_KEY`` in the environment or .env),
offline otherwise: the run is kept under ./wandb for ``wandb sync``. When online
recording fails to start (a rejected key, an unreachable server) the run is
kept as an offline copy instead, and the user is told how to upload it. System
metrics come from wandb's own sampler.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from trainlab.redaction import redact
from trainlab.tracking.base import MetricPoint, RunInfo, Status, Tracker
from trainlab.tracking.wandb_file import wait_for_exit_record

if TYPE_CHECKING:
    from trainlab.evaluate import Evaluation

Mode = Literal["online", "offline", "disabled"]
_EXIT_CODES = {"finished": 0, "failed": 1, "killed": 130}
INIT_TIMEOUT_S = 30.0
# wandb waits 90 s for an unreachable server by default; WANDB_INIT_TIMEOUT wins
FLUSH_WAIT_S = 15.0  # for wandb's service to write an offline run's last records after finish()


def _curve_chart(curves: dict[str, dict[str, list[float]]], x: str, y: str, title: str, x_title: str,
                 y_title: str, points: int = 100) -> Any:
    """A W&B area-under-curve chart (the preset wandb.plot.roc_curve uses) from given points."""
    import wandb

    rows = []
    for name, curve in curves.items():
        step = max(1, len(curve[x]) // points)
        idx = sorted({*range(0, len(curve[x]), step), len(curve[x]) - 1})
        rows += [[name, round(curve[x][i], 4), round(curve[y][i], 4)] for i in idx]
    table = wandb.Table(columns=["class", x, y], data=rows)
    return wandb.plot_table("wandb/area-under-curve/v0", table, {"x": x, "y": y, "class": "class"},
                            {"title": title, "x-axis-title": x_title, "y-axis-title": y_title})


def resolve_mode(setting: str = "auto") -> Mode:
    """auto: WANDB_MODE if set, else online with a key, else offline."""
    if setting != "auto":
        return setting  # type: ignore[return-value]
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("online", "offline", "disabled"):
        return env  # type: ignore[return-value]
    if env == "dryrun":
        return "offline"
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, project: str | None = None, entity: str | None = None, mode: str = "auto",
                 system_metrics_interval: float = 2.0, directory: Path = Path("."), figures: bool = True) -> None:
        self._project = project
        self._figures = figures
        self._entity = entity
        self._mode_setting = mode
        self._interval = system_metrics_interval
        self._directory = directory
        self.mode: Mode = "offline"
        self.run: Any = None
        self._last_step = 0
        self._tags: dict[str, str] = {}

    def prepare(self) -> None:
        import wandb  # noqa: F401

        try:  # wandb.init imports its launch package (about 1 s: pydantic models) before it returns
            import wandb.sdk.launch.inputs.internal  # noqa: F401
        except ImportError:  # moved in another wandb version: init imports what it needs itself
            pass

    def start(self, run: RunInfo) -> None:
        import wandb

        self.mode = resolve_mode(self._mode_setting)
        self._directory.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")  # trainlab says where the run is; wandb need not
        settings = wandb.Settings(
            silent=True,
            console="off",  # trainlab prints its own progress; nothing of the terminal is uploaded
            x_stats_sampling_interval=self._interval,
            init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S)),
        )
        wandb_id, resume = run.run_id, None
        if run.resumed and self.mode == "online":
            resume = "allow"
        elif run.resumed:
            # wandb 0.31 cannot resume an offline run: the resumed part becomes a run of its own
            # in the same group, re-logging the whole history so it stands alone
            wandb_id = f"{run.run_id}-resumed-{secrets.token_hex(2)}"
        init = dict(
            project=self._project or os.environ.get("WANDB_PROJECT") or "trainlab",
            entity=self._entity,
            id=wandb_id,
            name=run.run_id,
            group=run.group or run.experiment,
            job_type=run.job,
            config=run.config,
            # absolute: wandb's service process may have been started in another folder
            dir=str(self._directory.resolve()),
            reinit="create_new",
            settings=settings,
        )
        try:
            self.run = wandb.init(**init, mode=self.mode, resume=resume)
        except Exception as exc:
            if self.mode != "online":
                raise
            # nothing is lost: the run goes on offline, and `wandb sync` uploads it once the problem is fixed
            reason = redact(" ".join(str(exc).split()))[:300]
            self.mode = "offline"
            self.run = wandb.init(**{**init, "id": f"{run.run_id}-offline-{secrets.token_hex(2)}"}, mode="offline")
            self.degraded = f"could not record online ({reason}); kept an offline copy instead. {self.where()}"
        if run.resumed and self.mode == "online" and "error" in self.run.summary:
            del self.run.summary["error"]  # the failed attempt's error is not this attempt's

    def log_params(self, params: dict[str, str]) -> None:
        pass  # the nested config was given to wandb.init

    def set_tags(self, tags: dict[str, str]) -> None:
        # W&B tags are short labels: "key:value", at most 64 characters
        self._tags.update(tags)
        self.run.tags = tuple(f"{k}:{v}"[:64] for k, v in self._tags.items())
        self.run.config.update({"trainlab_tags": dict(self._tags)}, allow_val_change=True)

    def log_metrics(self, points: Sequence[MetricPoint]) -> None:
        for p in points:
            self.run.log(p.values, step=p.step)
            self._last_step = max(self._last_step, p.step)

    def replace_history(self, history: Sequence[dict[str, float]]) -> None:
        # a resumed online run continues after its last step; an offline one starts a new file
        for step, values in enumerate(history, 1):
            if step >= self.run.step:
                self.run.log(values, step=step)
                self._last_step = step

    def log_summary(self, metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)

    def _write(self, name: str, data: str | bytes) -> None:
        """A file in the run's folder, which wandb uploads (online) or keeps for sync (offline)."""
        path = Path(self.run.dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    def log_dict(self, name: str, data: Any) -> None:
        yaml_file = name.endswith((".yaml", ".yml"))
        self._write(name, yaml.safe_dump(data, sort_keys=False) if yaml_file else json.dumps(data, indent=2))

    def log_text(self, name: str, text: str) -> None:
        self._write(name, text)

    def log_evaluation(self, ev: Evaluation, prefix: str) -> None:
        import wandb

        columns, rows = ev.predictions
        tables = wandb.Artifact(f"{prefix}predictions-{self.run.id}", type="predictions")
        # declared column types: wandb then skips inferring them row by row (a third of the time)
        dtypes = [int, str, str, *[float] * (len(columns) - 3)]
        tables.add(wandb.Table(columns=columns, data=rows, dtype=dtypes), f"{prefix}predictions")
        tables.add(wandb.Table(columns=["class", "precision", "recall", "f1", "support"],
                               data=[[c[k] for k in ("class", "precision", "recall", "f1", "support")]
                                     for c in ev.per_class]), f"{prefix}per_class")
        self.run.log_artifact(tables)
        if not self._figures:
            return
        # charts from trainlab's own curve points (wandb.plot.roc_curve would recompute them from
        # every probability), on the last epoch's row of the history
        self.run.log({
            f"{prefix}confusion_matrix": wandb.plot.confusion_matrix(
                y_true=ev.y_true.tolist(), preds=ev.y_pred.tolist(), class_names=list(ev.class_names)),
            f"{prefix}roc": _curve_chart(ev.roc, "fpr", "tpr", "ROC, one-vs-rest", "False positive rate",
                                         "True positive rate"),
            f"{prefix}pr": _curve_chart(ev.pr, "recall", "precision", "Precision-recall, one-vs-rest", "Recall",
                                        "Precision"),
        }, step=self._last_step)

    def log_model(self, path: Path, metadata: dict[str, Any]) -> None:
        import wandb

        model = wandb.Artifact(f"model-{self.run.id}", type="model",
                               metadata={k: v for k, v in metadata.items() if k != "example"})
        model.add_file(str(path), name=Path(path).name)
        self.run.log_artifact(model, aliases=["best", "latest"])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        self._write(f"{artifact_path}/{path.name}" if artifact_path else path.name, path.read_bytes())

    def finish(self, status: Status, error: str | None = None) -> None:

        self.run.summary["trainlab_status"] = status
        if error:
            self.run.summary["error"] = redact(error)[:2000]
        self.run.finish(exit_code=_EXIT_CODES[status])
        if self.mode == "offline":
            # finish() returns before wandb's service wrote the run's end: the offline copy is complete,
            # and the run folder may say finished, only once the exit record is on disk
            run_file = Path(self.run.dir).parent / f"run-{self.run.id}.wandb"
            if not wait_for_exit_record(run_file, FLUSH_WAIT_S):
                raise TimeoutError(f"wandb did not write the end of {run_file} within {FLUSH_WAIT_S:g} s")

    def where(self) -> str | None:
        if self.run is None or self.mode == "disabled":
            return None
        if self.mode == "online":
            return f"W&B: {self.run.url}"
        folder = Path(self.run.dir).parent
        try:
            folder = folder.relative_to(Path.cwd())
        except ValueError:
            pass
        return f"W&B (offline): {folder}; upload it later with `wandb sync {folder}`"
