"""MLflow's own servers as child processes, announced only once they answer: the UI (``mlflow ui``) and the
scoring server for a model (``mlflow models serve``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from trainlab.errors import TrackingError

STARTUP_TIMEOUT_S = 180.0  # first start on a small CPU imports MLflow's server stack (tens of seconds)


@dataclass
class UiServer:
    url: str
    process: subprocess.Popen

    def wait(self) -> int:
        return self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_ui(store_uri: str, host: str, port: int, timeout: float = STARTUP_TIMEOUT_S,
             starting: Callable[[], None] = lambda: None) -> UiServer:
    """Start ``mlflow ui`` on ``host:port`` and return when http://host:port/health answers."""
    return start_mlflow(["ui", "--backend-store-uri", store_uri, "--host", host, "--port", str(port)], host, port,
                        "/health", f"mlflow ui --backend-store-uri {store_uri}", timeout, starting=starting)


def start_model_server(model_uri: str, tracking_uri: str, host: str, port: int,
                       timeout: float = STARTUP_TIMEOUT_S, starting: Callable[[], None] = lambda: None) -> UiServer:
    """Start ``mlflow models serve`` on a model (in this environment, reading the registry and artifacts from
    ``tracking_uri``) and return when http://host:port/ping answers."""
    # MLflow runs `uvicorn` by name: this environment's, also when the venv is not activated
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    return start_mlflow(["models", "serve", "-m", model_uri, "--env-manager", "local", "--host", host,
                         "--port", str(port)], host, port, "/ping",
                        f"MLFLOW_TRACKING_URI=... mlflow models serve -m {model_uri} --env-manager local", timeout, env,
                        starting)


def start_mlflow(args: list[str], host: str, port: int, health: str, shown: str, timeout: float,
                 env: dict[str, str] | None = None, starting: Callable[[], None] = lambda: None) -> UiServer:
    """``python -m mlflow ARGS`` serving on ``host:port``; returns once ``health`` answers 200. ``starting`` is
    called once the port is known to be free, as the server process starts."""
    url = f"http://{host}:{port}"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))  # another server there would answer the health check in our place
        except OSError as exc:
            raise TrackingError(f"port {port} on {host} is already in use ({exc.strerror}); pass another one "
                                "with --port") from None
    starting()
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen([sys.executable, "-m", "mlflow", *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    server = UiServer(url, process)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}{health}", timeout=2) as response:
                    if response.status == 200 and process.poll() is None:
                        return server
            except (urllib.error.URLError, OSError):
                pass
            if process.poll() is not None:
                log.seek(0)
                lines = [line.strip() for line in log.read().splitlines() if line.strip()]
                reason = next((line for line in reversed(lines) if "address already in use" in line.lower()), None)
                if reason:
                    raise TrackingError(f"port {port} on {host} is already in use; pass another one with --port")
                raise TrackingError(f"mlflow {args[0]} exited with code {process.returncode} before serving "
                                    f"({lines[-1] if lines else 'no output'}); run `{shown}` to see why")
            if time.monotonic() > deadline:
                raise TrackingError(f"mlflow {args[0]} did not answer on {url} within {timeout:.0f} s; "
                                    "the machine may be overloaded, try again")
            time.sleep(0.3)
    except BaseException:
        server.stop()
        raise
