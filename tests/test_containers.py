"""Containers: the trainer image, its entrypoint and the compose stack.

Checked everywhere: compose.yaml against the compose specification's schema and for its wiring, the
Dockerfiles with hadolint, the shell scripts with shellcheck, the entrypoint as a program. Built and run
for real where Podman can be had (it builds the same Dockerfile Docker does): the trainer image trains
and records, keeps a canary key out of every layer, file and console line, runs as non-root, and `podman
stop` marks its run killed; the MLflow image serves a PostgreSQL store to a trainer container over a
container network, as compose wires them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from postgres_server import MISSING, installed, postgres

# the images are built once, by one test process, for every test here (a module fixture)
pytestmark = pytest.mark.xdist_group("containers")
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PODMAN = ["podman", "--runtime", "/usr/sbin/runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
BASE = os.environ.get("TRAINLAB_TEST_BASE", "localhost/trainlab-base:bookworm")  # python:3.11-slim-bookworm's stand-in
TRAINER, MLFLOW = "localhost/trainlab:test", "localhost/trainlab-mlflow:test"
CANARY = secrets.token_hex(20)  # shaped like a W&B API key


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


# ---- the compose file ----------------------------------------------------------------------------------------

def test_compose_file_follows_the_compose_specification() -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads((ROOT / "tests/data/compose-spec.json").read_text()))
    assert list(validator.iter_errors(compose())) == []
    broken = compose()
    broken["services"]["trainer"]["depends_on"]["mlflow"]["condition"] = "healthy"
    broken["services"]["postgres"]["healthcheck"]["interval"] = 5
    wrong = {".".join(map(str, e.absolute_path)) for e in validator.iter_errors(broken)}
    assert {"services.trainer.depends_on", "services.postgres.healthcheck.interval"} <= wrong


def test_compose_services_are_wired_to_each_other() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"postgres", "mlflow", "trainer"}
    pg, server, trainer = services["postgres"], services["mlflow"], services["trainer"]

    # every service waited for says when it is healthy
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, name
            assert "healthcheck" in services[needed], needed
    assert trainer["depends_on"].keys() == {"mlflow"} and server["depends_on"].keys() == {"postgres"}
    # volumes named by services are declared, and every declared one is used
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used == set(spec["volumes"])

    env = pg["environment"]
    assert f"--username={env['POSTGRES_USER']}" in pg["healthcheck"]["test"][1]
    assert f"--dbname={env['POSTGRES_DB']}" in pg["healthcheck"]["test"][1]
    uri = server["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri == (f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/"
                   f"{env['POSTGRES_DB']}")
    assert "/mlartifacts" in server["volumes"][0] and "--artifacts-destination\", \"/mlartifacts" in \
        (ROOT / server["build"]["dockerfile"]).read_text()

    tracking = trainer["environment"]["MLFLOW_TRACKING_URI"]
    assert tracking == "http://mlflow:5000"
    assert "mlflow:5000" in server["command"][1].split(",")  # the server answers the trainer's Host header
    assert trainer["env_file"] == ".env" and (ROOT / ".env.example").is_file()
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert all("WANDB_API_KEY" not in s.get("environment", {}) for s in services.values())  # from .env only
    for service in (server, trainer):
        assert (ROOT / service["build"]["context"] / service["build"].get("dockerfile", "Dockerfile")).is_file()


def test_the_build_context_holds_no_secret_and_no_run_record() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"  # everything out, then what the images need back in
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    for kept_out in (".env", ".git", "mlruns", "runs", "data", "wandb", ".venv", "build"):
        assert not any(fnmatch.fnmatch(kept_out, p) for p in allowed), kept_out
    for needed in ("requirements-runtime.lock", "src", "configs", "docker/entrypoint.sh"):
        assert needed in allowed


# ---- linters -------------------------------------------------------------------------------------------------

def test_hadolint_passes_on_the_dockerfiles() -> None:
    files = [ROOT / "Dockerfile", ROOT / "docker/mlflow.Dockerfile"]
    out = subprocess.run([str(BIN / "hadolint"), *map(str, files)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "hadolint ignore" not in "".join(f.read_text() for f in files)


def test_shellcheck_passes_on_every_shell_script() -> None:
    scripts = [ROOT / ".ci/run", *sorted((ROOT / "docker").glob("*.sh"))]
    assert len(scripts) >= 4
    out = subprocess.run([str(BIN / "shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- the entrypoint, as a program ----------------------------------------------------------------------------

def entrypoint(args: list[str], env: dict[str, str], path: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return subprocess.run(["sh", str(ROOT / "docker/entrypoint.sh"), *args], capture_output=True, text=True,
                          env={**clean, **env, "PATH": f"{path}:{os.environ['PATH']}"}, timeout=60)


def test_entrypoint_says_how_wandb_is_used_and_never_prints_the_key(tmp_path: Path) -> None:
    show = ["python3", "-c", "import os; print(len(os.environ.get('WANDB_API_KEY', '')))"]
    online = entrypoint(show, {"WANDB_API_KEY": CANARY}, tmp_path)
    assert online.returncode == 0 and online.stdout.strip() == "40"  # the key reaches the command
    assert "W&B key found (not shown): runs are mirrored to W&B online" in online.stderr
    offline = entrypoint(show, {"WANDB_API_KEY": CANARY, "WANDB_MODE": "Offline"}, tmp_path)
    assert "but WANDB_MODE=offline: runs are not sent to W&B" in offline.stderr
    keyless = entrypoint(show, {}, tmp_path)
    assert keyless.stdout.strip() == "0" and "no WANDB_API_KEY: W&B runs are kept offline" in keyless.stderr
    for result in (online, offline, keyless):
        assert CANARY not in result.stdout + result.stderr


def test_entrypoint_becomes_the_command_and_prefixes_trainlab_subcommands(tmp_path: Path) -> None:
    fake = tmp_path / "trainlab"
    fake.write_text("#!/bin/sh\necho \"trainlab $*\"\n")
    fake.chmod(0o755)
    # exec: the command has the entrypoint's PID, so docker stop's SIGTERM reaches it
    pid = ["python3", "-c", "import os; print(os.getpid())"]
    proc = subprocess.Popen(["sh", str(ROOT / "docker/entrypoint.sh"), *pid],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert int(proc.communicate(timeout=60)[0]) == proc.pid
    assert entrypoint(["train", "--config", "x.yaml"], {}, tmp_path).stdout == "trainlab train --config x.yaml\n"
    assert entrypoint(["--version"], {}, tmp_path).stdout == "trainlab --version\n"
    assert entrypoint(["trainlab", "sweep", "s.yaml"], {}, tmp_path).stdout == "trainlab sweep s.yaml\n"
    assert entrypoint(["sh", "-c", "echo plain"], {}, tmp_path).stdout == "plain\n"


def test_a_run_in_an_image_records_the_commit_the_image_was_built_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainlab.provenance import IMAGE_DIRTY, git_state

    monkeypatch.chdir(tmp_path)  # not a git checkout, as in the image
    assert git_state().commit is None
    monkeypatch.setenv("TRAINLAB_GIT_COMMIT", "0123abcd" * 5)
    state = git_state()
    assert (state.commit, state.dirty, state.untracked_skipped) == ("0123abcd" * 5, False, ())
    monkeypatch.setenv("TRAINLAB_GIT_DIRTY", "true")
    assert git_state().untracked_skipped == (IMAGE_DIRTY,)  # trainlab reproduce refuses it, saying why


# ---- built and run with Podman -------------------------------------------------------------------------------

def podman_missing() -> str | None:
    if shutil.which("podman") is None or not Path("/usr/sbin/runc").is_file():
        return "podman and runc are not installed (apt-get install -y podman runc debootstrap)"
    if os.geteuid() != 0:
        return "the container tests run podman as root (as .ci/run does)"
    return None


def podman(*args: str, check: bool = True, timeout: float = 1800, **kw: Any) -> subprocess.CompletedProcess:
    out = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project as a build context (the working tree's files, as git sees them) with a .env beside
    them holding the canary key, as a user's checkout would."""
    reason = podman_missing()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("context")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    (folder / ".env").write_text(f"WANDB_API_KEY={CANARY}\n")
    if not subprocess.run([*PODMAN, "image", "exists", BASE]).returncode == 0:
        if shutil.which("debootstrap") is None:
            pytest.skip(f"no base image {BASE} and no debootstrap to make one (apt-get install -y debootstrap)")
        subprocess.run(["bash", str(ROOT / "docker/local-base.sh"), BASE], check=True, capture_output=True)
    return folder


def build(context: Path, tag: str, dockerfile: str) -> None:
    # docker format, as Docker builds: OCI images have no HEALTHCHECK
    args = ["build", "--format", "docker", "--network=host", *LIMITS, "-f", str(context / dockerfile), "-t", tag,
            "--build-arg", f"BASE={BASE}", "--build-arg", f"GIT_COMMIT={head()}"]
    if Path("/opt/wheels").is_dir():  # this machine's torch wheel, in place of PyTorch's index
        args += ["-v", "/opt/wheels:/opt/wheels:ro", "--build-arg", "WHEELS=/opt/wheels", "--build-arg", "TORCH_INDEX="]
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():  # this machine's proxy CA, for pip and uv
        args += ["-v", "/etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro", "--build-arg", "PIP_CERT=/host-ca.crt"]
    podman(*args, str(context))


def head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def trainer_image(context: Path) -> str:
    build(context, TRAINER, "Dockerfile")
    return TRAINER


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder mounted as the container's /work, writable by its user (uid 1000)."""
    folder = tmp_path / "work"
    folder.mkdir()
    os.chown(folder, 1000, 1000)
    return folder


def env_file(tmp_path: Path, **extra: str) -> Path:
    path = tmp_path / "run.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in {"WANDB_API_KEY": CANARY, **extra}.items()))
    return path


def local_client(work: Path):  # noqa: ANN201
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{work}/mlruns/mlflow.db")


@pytest.mark.slow
@pytest.mark.container
def test_the_trainer_image_trains_records_and_keeps_the_key_out_of_everything(
        trainer_image: str, work: Path, tmp_path: Path) -> None:
    # online with a key, but no network: the W&B mirror falls back to an offline copy and the run goes on,
    # ending with exit code 3 (recorded, but not by every backend as asked)
    keyed = env_file(tmp_path, WANDB_INIT_TIMEOUT="5")
    out = podman("run", "--rm", "--network=none", *LIMITS, "--env-file", str(keyed),
                 "-v", f"{work}:/work", trainer_image, "all", "--config", "/opt/trainlab/configs/quickstart.yaml",
                 "train.epochs=3", check=False)
    console = out.stdout + out.stderr
    assert out.returncode == 3, console[-4000:]
    assert "W&B key found (not shown)" in console and "kept an offline copy instead" in console
    assert CANARY not in console

    runs = local_client(work).search_runs(["0"] + [e.experiment_id for e in local_client(work).search_experiments()])
    train = [r for r in runs if r.data.tags.get("job", "train") == "train"]
    assert len(train) == 1 and train[0].info.status == "FINISHED"
    run = train[0]
    assert run.data.tags["git_commit"] == head()
    assert [m.step for m in local_client(work).get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2, 3]
    assert run.data.metrics["test_accuracy"] > 0.5  # ten classes: chance is 0.1

    # written by the image's user, not root (wandb links its service's log, inside the container: lstat)
    assert {p.lstat().st_uid for p in work.rglob("*")} == {1000}
    leaked = [p for p in work.rglob("*") if p.is_file() and not p.is_symlink() and CANARY.encode() in p.read_bytes()]
    assert leaked == [] and list(work.glob("wandb/offline-run-*"))

    config = json.loads(podman("image", "inspect", trainer_image).stdout)[0]["Config"]
    assert config["User"] == "1000:1000"
    history = podman("history", "--no-trunc", trainer_image).stdout
    assert CANARY not in history + json.dumps(config)
    archive = tmp_path / "image.tar"
    podman("save", "--format", "docker-archive", "-o", str(archive), trainer_image)
    assert not contains(archive, CANARY.encode())  # no layer holds the key (the context's .env stayed out)
    assert contains(archive, b"def run_experiment")  # the search finds what is there


def contains(path: Path, needle: bytes, chunk: int = 1 << 24) -> bool:
    with open(path, "rb") as f:
        tail = b""
        while block := f.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle):]
    return False


@contextlib.contextmanager
def training(image: str, work: Path, env: Path) -> Iterator[str]:
    """A long training in a detached container, yielded (its name) once it has logged an epoch; removed after."""
    name = f"trainlab-train-{secrets.token_hex(4)}"
    podman("run", "-d", "--name", name, "--network=none", *LIMITS, "--env-file", str(env), "-v", f"{work}:/work",
           image, "train", "--config", "/opt/trainlab/configs/quickstart.yaml", "train.epochs=500",
           "train.early_stop.patience=500")
    try:
        deadline = time.monotonic() + 300
        while not (work / "mlruns/mlflow.db").exists() or not running_with_metrics(work):
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-3000:]
            assert podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"
            time.sleep(1)
        yield name
    finally:
        podman("rm", "--force", name, check=False)


@pytest.mark.slow
@pytest.mark.container
def test_podman_stop_marks_the_run_killed(trainer_image: str, work: Path, tmp_path: Path) -> None:
    with training(trainer_image, work, env_file(tmp_path, WANDB_MODE="offline")) as name:
        podman("stop", "--time", "60", name)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "143"
    (run,) = local_client(work).search_runs([e.experiment_id for e in local_client(work).search_experiments()])
    assert run.info.status == "KILLED"


@pytest.mark.slow
@pytest.mark.container
def test_a_run_whose_container_is_killed_shows_killed_from_the_next_container(
        trainer_image: str, work: Path, tmp_path: Path) -> None:
    offline = env_file(tmp_path, WANDB_MODE="offline")
    with training(trainer_image, work, offline) as name:
        podman("kill", "--signal", "KILL", name)  # docker kill, the OOM killer: nothing can be caught
        podman("wait", name, check=False)
    # another container (another host name, another pid namespace) sees the dead process's lock let go
    listed = podman("run", "--rm", "--network=none", *LIMITS, "--env-file", str(offline), "-v", f"{work}:/work",
                    trainer_image, "runs", "--json")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["KILLED"], listed.stdout[-2000:]


def running_with_metrics(work: Path) -> bool:
    try:
        client = local_client(work)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    except Exception:  # the store is being created by the container
        return False
    return any(r.info.status == "RUNNING" and "val_accuracy" in r.data.metrics for r in runs)


# ---- the compose stack's wiring, for real ---------------------------------------------------------------------

@contextlib.contextmanager
def network() -> Iterator[tuple[str, str]]:
    """An internal container network (no route out: nothing can be fetched); yields its name and gateway."""
    name = f"trainlab-test-{secrets.token_hex(4)}"
    podman("network", "create", "--internal", name)
    try:
        info = json.loads(podman("network", "inspect", name).stdout)[0]
        yield name, info["subnets"][0]["gateway"]
    finally:
        podman("network", "rm", "--force", name, check=False)


@pytest.mark.slow
@pytest.mark.container
@pytest.mark.skipif(not installed(), reason=MISSING)
def test_the_compose_wiring_runs_trainer_to_mlflow_server_to_postgresql(
        context: Path, trainer_image: str, work: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    build(context, MLFLOW, "docker/mlflow.Dockerfile")
    spec = compose()["services"]
    password = secrets.token_hex(8)
    artifacts = tmp_path / "mlartifacts"
    artifacts.mkdir()
    os.chown(artifacts, 1000, 1000)
    server = f"trainlab-mlflow-{secrets.token_hex(4)}"
    # the server's database URI as compose gives it, pointed at a PostgreSQL the test starts
    stack_uri = urlsplit(spec["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"])
    with postgres(listen="*", password=password, user=stack_uri.username, databases=(stack_uri.path[1:],)) as port, \
            network() as (net, gateway):
        backend = stack_uri._replace(netloc=f"{stack_uri.username}:{password}@{gateway}:{port}").geturl()
        # the service as compose.yaml starts it: its environment, its command, its name on the network
        podman("run", "-d", "--name", server, "--network", net, "--network-alias", "mlflow", *LIMITS,
               "-e", f"MLFLOW_BACKEND_STORE_URI={backend}", "-v", f"{artifacts}:/mlartifacts",
               MLFLOW, *spec["mlflow"]["command"])
        try:
            deadline = time.monotonic() + 180
            while podman("healthcheck", "run", server, check=False).returncode != 0:  # the image's HEALTHCHECK
                assert time.monotonic() < deadline, podman("logs", server, check=False).stderr[-3000:]
                time.sleep(2)
            offline = env_file(tmp_path, WANDB_MODE="offline")
            out = podman("run", "--rm", "--network", net, *LIMITS, "--env-file", str(offline),
                         "-e", f"MLFLOW_TRACKING_URI={spec['trainer']['environment']['MLFLOW_TRACKING_URI']}",
                         "-v", f"{work}:/work", trainer_image, "train", "--config",
                         "/opt/trainlab/configs/quickstart.yaml", "train.epochs=2", check=False)
            assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
            assert "MLflow: http://mlflow:5000/#/experiments/" in out.stdout
            # a sweep the same way, two workers: every trial recorded on the server
            (work / "lr.yaml").write_text("method: grid\nmetric: {name: val_accuracy}\n"
                                          "parameters:\n  train.optimizer.lr: {values: [0.001, 0.003]}\n")
            # two trainers, the server and PostgreSQL share two cores here: an answer may take over trainlab's
            # default 10 s (then the run is recorded, exit code 3, and says which call went unanswered)
            sweep = [*PODMAN, "run", "--rm", "--network", net, *LIMITS, "-e", "WANDB_MODE=disabled",
                     "-e", "MLFLOW_HTTP_REQUEST_TIMEOUT=30",
                     "-e", f"MLFLOW_TRACKING_URI={spec['trainer']['environment']['MLFLOW_TRACKING_URI']}",
                     "-v", f"{work}:/work", trainer_image, "trainlab", "sweep", "lr.yaml", "--workers", "2",
                     "train.epochs=1", "name=lr-sweep"]
            first = subprocess.run(sweep, capture_output=True, text=True, timeout=900)
            assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
            # again, in a new container (another host to trainlab): it leads, as the first let go when it ended
            again = subprocess.run(sweep, capture_output=True, text=True, timeout=900)
            assert again.returncode == 0 and "joined sweep" not in again.stdout, (again.stdout + again.stderr)[-3000:]
        finally:
            logs = podman("logs", server, check=False)
            podman("rm", "--force", server, check=False)
        assert CANARY not in logs.stdout + logs.stderr

        # read back from the database the server wrote: every epoch, the commit; artifacts on its volume
        client = MlflowClient(stack_uri._replace(netloc=f"{stack_uri.username}:{password}@127.0.0.1:{port}").geturl())
        (run,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
        assert run.info.status == "FINISHED" and run.data.tags["git_commit"] == head()
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert list(artifacts.rglob("best.pt")) and not (work / "mlruns").exists()
        trials = client.search_runs([client.get_experiment_by_name("lr-sweep").experiment_id], "tags.job = 'trial'")
        assert sorted(t.data.params["train.optimizer.lr"] for t in trials) == ["0.001", "0.003"]
        assert {t.info.status for t in trials} == {"FINISHED"}
