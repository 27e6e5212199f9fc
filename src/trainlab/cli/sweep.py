"""`trainlab sweep SWEEP.yaml` and `trainlab sweep show SWEEP_ID`: many configurations, one record."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from trainlab.cli.app import app, console
from trainlab.cli.common import (
    ConfigOption,
    QuietOption,
    TrackerOption,
    TrackingUriOption,
    as_launcher,
    as_rank,
    fmt,
    load_config,
    print_where,
    user_errors,
    warn,
)
from trainlab.cli.training import follow
from trainlab.errors import ConfigError, RunInterrupted
from trainlab.experiments.workers import STORAGE_ENV, start_workers, stop_workers, wait_for_workers
from trainlab.redaction import redact

if TYPE_CHECKING:
    import optuna

    from trainlab.experiments.study_ranking import TrialRow
    from trainlab.experiments.study_storage import Sweep
    from trainlab.experiments.sweep_run import SweepOutcome



@app.command(context_settings={"allow_interspersed_args": True})
def sweep(
    target: str | None = typer.Argument(None, help="A sweep file (W&B's sweep format, YAML or JSON), or `show`."),
    args: list[str] | None = typer.Argument(None, help="key=value overrides of the base config; after `show`: "
                                               "the sweep id."),
    config: Path | None = ConfigOption,
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes on this machine, each with "
                                "cores / N torch threads."),
    storage: str | None = typer.Option(None, "--storage", envvar=STORAGE_ENV, show_envvar=False,
                                          help="Where the study lives: a journal file (default: "
                                          "runs/<sweep>/study.journal) or postgresql://... shared by several machines."),
    resume: str | None = typer.Option(None, "--resume", help="Continue a sweep by its id (the same command "
                                         "again does it too)."),
    new: bool = typer.Option(False, "--new", help="Start the sweep file afresh as a new sweep (ID-2, ID-3, ...) "
                             "instead of continuing, or showing, the sweep it ran as before."),
    tracker: list[str] | None = TrackerOption,
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="`show`: print the ranking as JSON."),
    quiet: bool = QuietOption,
    nproc: int = typer.Option(1, "--nproc", min=1, help="Train each trial on N processes (DDP under torchrun, as "
                              "`trainlab train --nproc`); with --workers, start one such command per worker instead."),
    join: bool = typer.Option(False, "--join", hidden=True, help="Run trials only (a worker another process spawned)."),
    threads: int | None = typer.Option(None, "--threads", hidden=True, min=1),
    worker_index: int = typer.Option(0, "--worker-index", hidden=True, min=0),
) -> None:
    """Run a sweep: every trial a recorded run nested under the sweep's run; resumable, parallel, offline."""
    from trainlab import distributed

    if distributed.launched():  # one rank of each trial's processes: rank 0 runs the sweep, the others follow
        with as_rank() as ranks:
            if not ranks.leads:
                follow_trials(ranks)
                return
            with user_errors():
                sweep_here(target, args, config, workers, storage, resume, new, tracker, tracking_uri, as_json, quiet,
                           join, threads, worker_index, ranks)
            ranks.share((None, None))  # the sweep is over: the other ranks stop waiting for a trial
        return
    if nproc > 1:
        as_launcher(lambda: launch_sweep(nproc, workers, target, args, config, storage, resume, new, tracker, quiet))
    with user_errors():
        sweep_here(target, args, config, workers, storage, resume, new, tracker, tracking_uri, as_json, quiet, join,
                   threads, worker_index, None)


def launch_sweep(nproc: int, workers: int, target: str | None, args: list[str] | None, config: Path | None,
                 storage: str | None, resume: str | None, new: bool, tracker: list[str] | None, quiet: bool) -> int:
    """The same sweep command on ``nproc`` ranks under torchrun (checked here first: a bad file is one line); their
    exit code."""
    from trainlab.launch import Launch, launch

    if workers > 1:
        raise ConfigError(f"--workers {workers} with --nproc {nproc} would be {workers * nproc} training processes "
                          f"from one command; start `trainlab sweep ... --nproc {nproc}` once per worker instead "
                          "(here, or on other machines: each joins the same study)")
    if target == "show":
        raise ConfigError("`trainlab sweep show` reads a sweep; it takes no --nproc")
    resolve_sweep(target, args, config, tracker, storage, resume)  # checked only: rank 0 opens it (or a --new one)
    command = ["sweep", *([target] if target else []), *(args or []), *(["--config", str(config)] if config else []),
               *(["--storage", storage] if storage else []), *(["--resume", resume] if resume else []),
               *(["--new"] if new else []), *[arg for name in tracker or [] for arg in ("--tracker", name)],
               *(["--quiet"] if quiet else [])]
    return launch(Launch(nproc), command, again=lambda: "the same command (the trial in flight runs again)")


def follow_trials(ranks: Any) -> None:
    """A rank other than 0 of a sweep: train each trial's shard until rank 0 says the sweep is over."""
    while follow(ranks, trials=True):
        pass


def sweep_here(target: str | None, args: list[str] | None, config: Path | None, workers: int, storage: str | None,
               resume: str | None, new: bool, tracker: list[str] | None, tracking_uri: str | None, as_json: bool,
               quiet: bool, join: bool, threads: int | None, worker_index: int, ranks: Any) -> None:
    """The sweep in this process (rank 0 of each trial's processes when ``ranks``)."""
    if target == "show":
        if not args or len(args) != 1:
            raise ConfigError("`trainlab sweep show` takes one sweep id, e.g. `trainlab sweep show "
                              "sweep-grid-1a2b3c4d` (the id is printed when a sweep starts)")
        show(args[0], tracking_uri, as_json)
        return
    if join:  # started from a script (`cmd &`), a process inherits SIGINT ignored: its leader stops it with it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    the_sweep, cfg = resolve_sweep(target, args, config, tracker, storage, resume, new)
    if not join:
        from trainlab.experiments.sweep_run import sweep_status

        status = sweep_status(the_sweep, warn)
        if status.finished is not None:
            done = status.finished
            console.print(f"sweep {the_sweep.sweep_id} already finished ({len(done.rows)} configurations); its "
                          f"ranking again below. `--new` starts {target or 'the same file'} afresh as a new sweep",
                          soft_wrap=True, highlight=False, markup=False)
            print_ranking(done, quiet)
            return
        asked = workers
        if status.left is not None:  # no more workers than configurations left (one leads and records)
            workers = max(1, min(workers, status.left))
        announce(the_sweep, workers, asked, status.left)
    run(the_sweep, cfg, workers, threads, quiet, join, worker_index, same_command=not new, ranks=ranks)


def resolve_sweep(target: str | None, overrides: list[str] | None, config: Path | None,
                  tracker: list[str] | None, storage: str | None, resume: str | None,
                  new: bool = False) -> tuple[Sweep, Any]:
    from trainlab.config import validate_config
    from trainlab.experiments.study_open import fresh_sweep, stored_sweep
    from trainlab.experiments.study_storage import JOURNAL, make_sweep
    from trainlab.experiments.sweep_spec import load_sweep, parse_sweep

    if resume is not None and new:
        raise ConfigError("--resume continues a sweep and --new starts one afresh; pass one of them")
    if resume is not None:
        if target or overrides or config or tracker:
            raise ConfigError("--resume continues a sweep with the file and config it was started with; drop the "
                              "sweep file, --config, --tracker and overrides")
        cfg = load_config(None, [])
        where = storage or str(Path(cfg.output_dir) / resume / JOURNAL)
        source, base = stored_sweep(resume, where, warn)
        cfg = validate_config(base)
        return make_sweep(parse_sweep(source, base, default_name=resume), cfg, where, known_id=resume), cfg
    if target is None:
        raise ConfigError("give a sweep file (`trainlab sweep sweep.yaml`), `--resume SWEEP_ID`, or `show SWEEP_ID`")
    cfg = load_config(config or default_base(), overrides, tracker)
    spec = load_sweep(Path(target), cfg.model_dump(mode="json"))
    the_sweep = make_sweep(spec, cfg, storage)
    return (fresh_sweep(the_sweep, cfg, storage) if new else the_sweep), cfg


def default_base() -> Path | None:
    """The quickstart config when the project's configs are at hand, else the built-in defaults."""
    quickstart = Path("configs/quickstart.yaml")
    return quickstart if quickstart.is_file() else None


def left(configurations: int | None) -> str:
    return f"only {configurations} configuration{' is' if configurations == 1 else 's are'}"


def announce(the_sweep: Sweep, workers: int, asked: int, remaining: int | None) -> None:

    spec = the_sweep.spec
    if spec.ignored:
        console.print(f"ignored W&B sweep field(s) {', '.join(spec.ignored)}: trials run in this process, not as "
                      "programs", highlight=False)
    budget = [f"{spec.trial_cap} configurations" if spec.trial_cap else "",
              f"{spec.time_budget:g} s" if spec.time_budget else ""]
    seeds = f" x {spec.seeds} seeds" if spec.seeds > 1 else ""
    pruner = f", pruner {spec.pruner}" if spec.pruner != "none" else ""
    console.print(f"sweep {the_sweep.sweep_id}: {spec.method} over {', '.join(p.key for p in spec.params)} · "
                  f"{' and '.join(b for b in budget if b)}{seeds} · {spec.goal} {spec.metric}{pruner} · "
                  f"{workers} worker{'s' if workers > 1 else ''}"
                  f"{f' (of --workers {asked}: {left(remaining)} left)' if asked > workers else ''}"
                  " · "
                  f"study {redact(the_sweep.storage)}",
                  soft_wrap=True, highlight=False, markup=False)


def run(the_sweep: Sweep, cfg: Any, workers: int, threads: int | None, quiet: bool, join: bool,
        worker_index: int = 0, same_command: bool = True, ranks: Any = None) -> None:
    from trainlab.experiments.sweep import Worker, threads_per_worker
    from trainlab.experiments.sweep_run import run_sweep

    live = sweep_display(the_sweep, quiet or join)

    def work(study: optuna.Study, parent: str | None) -> None:
        live.study = study
        share = threads or threads_per_worker(workers)
        helpers = start_workers(the_sweep, workers - 1, share)  # this process is the first worker
        try:
            Worker(the_sweep, parent, threads=share, callbacks=live, warn=warn, ranks=ranks).run(study)
        except KeyboardInterrupt:
            stop_workers(helpers)
            raise
        wait_for_workers(helpers, live.refresh, warn)

    ended = False
    try:
        outcome = run_sweep(the_sweep, cfg, work=work, on_poll=live.refresh, warn=warn, worker_index=worker_index)
        ended = True
    except KeyboardInterrupt as exc:
        ended = True  # the study is intact: the display shows the trial marked killed
        if join:  # the process that started this worker says it, once
            raise typer.Exit(RunInterrupted.of(exc).exit_code) from None
        raise RunInterrupted.of(exc, message=(
            f"interrupted; sweep {the_sweep.sweep_id} is marked killed, and the trial in flight will run again. "
            f"Continue with {'the same command, or ' if same_command else ''}"
            f"`trainlab sweep --resume {the_sweep.sweep_id}`")) from None
    finally:
        if ended:  # a study that broke (a full disk) is not read again to redraw: its error is the one to say
            live.refresh()
        live.close()
    if join:
        return
    print_ranking(outcome, quiet)
    if outcome.leader is not None:

        from trainlab.tracking.process import HOST_TAG, PID_TAG  # the tracking package: pydantic

        console.print(f"this process joined sweep {outcome.sweep_id} as a worker; the leading process (pid "
                      f"{outcome.leader.get(PID_TAG)} on {outcome.leader.get(HOST_TAG)}) records its ranking",
                      soft_wrap=True, highlight=False, markup=False)
        return
    print_where(outcome.sweep_id, outcome.where, outcome.tracking_failures, quiet=quiet)


# -- what the user sees ------------------------------------------------------------------------


def sweep_display(the_sweep: Sweep, quiet: bool) -> Any:
    """The live table on a terminal (refreshed at each epoch and trial end); a line per ended trial in logs."""
    from trainlab.experiments.study_ranking import trial_rows
    from trainlab.experiments.sweep import SweepCallbacks

    class SweepDisplay(SweepCallbacks):
        def __init__(self) -> None:
            self.study: Any = None
            self.live: Any = None
            self.said: set[int] = set()  # trials whose end was printed (log mode)

        def on_trial_start(self, number: int, params: dict[str, Any], seed: int) -> None:
            self.refresh()

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            self.refresh()

        def on_trial_end(self, row: TrialRow) -> None:
            self.refresh()

        def refresh(self) -> None:
            if quiet or self.study is None:
                return
            rows = trial_rows(self.study, the_sweep.spec)
            metric = the_sweep.spec.metric
            if console.is_terminal:
                from rich.live import Live

                if self.live is None:
                    self.live = Live(console=console, auto_refresh=False, transient=True)
                    self.live.start()
                best = next((r for r in rows if r.state == "complete"), None)
                title = f"sweep {the_sweep.sweep_id} · best so far: " + (
                    f"trial {best.number}, {metric} {fmt(best.value)}" if best else "none yet")
                self.live.update(ranking_table(rows, metric, title), refresh=True)
                return
            best = next((r for r in rows if r.state == "complete"), None)
            for row in sorted(rows, key=lambda r: r.number):
                if row.state == "running" or row.number in self.said:
                    continue
                self.said.add(row.number)
                console.print(f"trial {row.number} {row.state}  {params_text(row.params)}  epochs {row.epochs}  "
                              f"{metric} {fmt(row.value if row.value is not None else row.latest)}  best so far "
                              f"{fmt(best.value if best else None)}{f' (trial {best.number})' if best else ''}",
                              soft_wrap=True, highlight=False, markup=False)

        def close(self) -> None:
            if self.live is not None:
                self.live.stop()

    return SweepDisplay()


def params_text(params: dict[str, Any]) -> str:
    def text(v: Any) -> str:
        return json.dumps(v) if isinstance(v, (dict, list)) else f"{v:.4g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={text(v)}" for k, v in params.items())


def ranking_table(rows: list[TrialRow], metric: str, title: str) -> Table:
    """trial, its parameters, epochs run, the validation metric (mean over seeds, with their range), the test
    accuracy reported beside it, state, seconds."""
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    seeded = any(len(r.values) > 1 for r in rows)
    columns = ("trial", *keys, "epochs", metric, *(["seed range"] if seeded else []), "test acc", "state", "s")
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col in keys or col == "state" else "right",
                         overflow="fold", no_wrap=col in ("state", "trial", "epochs"))
    for r in rows:
        value = r.value if r.value is not None else r.latest
        spread = [f"{min(r.values):.4f}-{max(r.values):.4f}" if len(r.values) > 1 else ""] if seeded else []
        table.add_row(str(r.number), *(params_text({k: r.params[k]}).split("=", 1)[1] if k in r.params else ""
                                       for k in keys),
                      str(r.epochs), fmt(value), *spread, fmt(r.test.get("accuracy")), r.state,
                      f"{r.seconds:.0f}" if r.seconds is not None else "")
    return table


def print_ranking(outcome: SweepOutcome, quiet: bool) -> None:
    better = "higher" if outcome.goal == "maximize" else "lower"
    console.print(ranking_table(outcome.rows, outcome.metric, f"sweep {outcome.sweep_id}: ranked by "
                                f"{outcome.metric} ({better} is better)"))
    best = outcome.best
    if best is None:
        console.print("no trial completed", highlight=False)
        return
    test = " · ".join(f"test {k} {fmt(v)}" for k, v in best.test.items())
    console.print(f"best: trial {best.number} ({params_text(best.params)}) {outcome.metric} {fmt(best.value)} on "
                  f"validation; {test} (reported, never chosen on) · runs {', '.join(best.run_ids)}",
                  soft_wrap=True, highlight=False, markup=False)
    if outcome.importances and not quiet:
        console.print("parameter importances (Optuna): " + ", ".join(
            f"{k} {v:.2f}" for k, v in outcome.importances.items()), soft_wrap=True, highlight=False, markup=False)


def show(sweep_id: str, tracking_uri: str | None, as_json: bool) -> None:
    from dataclasses import asdict

    from trainlab.experiments.sweep_run import sweep_ranking

    outcome = sweep_ranking(sweep_id, tracking_uri)
    if as_json:
        print(json.dumps({"sweep_id": outcome.sweep_id, "metric": outcome.metric, "goal": outcome.goal,
                          "importances": outcome.importances, "trials": [asdict(r) for r in outcome.rows]},
                         indent=2, default=str))
        return
    print_ranking(outcome, quiet=False)
