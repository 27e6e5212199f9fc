"""A throwaway PostgreSQL 15 cluster for the tests that need a real one (started and stopped by the test)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MISSING = "PostgreSQL 15 server not installed (apt-get install postgresql-15)"


def installed() -> bool:
    return (PG_BIN / "initdb").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextlib.contextmanager
def postgres(listen: str = "127.0.0.1", password: str | None = None, databases: tuple[str, ...] = ("mlflow",),
             user: str = "postgres") -> Iterator[int]:
    """A cluster listening on `listen` with `databases`, owned by `user`; yields its port. Without a
    password, loopback connections are trusted; with one, it is needed from anywhere (scram-sha-256)."""
    folder = Path(tempfile.mkdtemp(prefix="trainlab-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port, data = free_port(), folder / "data"
    auth = ["-A", "trust"]
    if password is not None:
        (folder / "pw").write_text(password)
        if os.geteuid() == 0:
            shutil.chown(folder / "pw", "postgres", "postgres")
        auth = ["-A", "scram-sha-256", f"--pwfile={folder / 'pw'}"]
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), *auth, "-U", user]),
                   check=True, capture_output=True)
    if password is not None:
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                                 f"-p {port} -k {folder} -c listen_addresses={listen}", "start"]),
                   check=True, capture_output=True)
    try:
        for database in databases:
            subprocess.run(_as_postgres([str(PG_BIN / "createdb"), "-h", str(folder), "-p", str(port), "-U",
                                         user, database]),
                           check=True, capture_output=True, env={**os.environ, "PGPASSWORD": password or ""})
        yield port
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
