from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import process
from app.main import create_app
from app.settings import Settings


def wait_ready(client: TestClient, timeout: float = 600) -> None:
    t_end = time.monotonic() + timeout
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < t_end, "engine did not become ready"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(warmup_sessions=[], max_sessions=3, rate_limit=40, idle_pause_s=300)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


class PostgresServer:
    """A throwaway PostgreSQL cluster on a loopback port (trust auth, no fsync), run as the
    ``postgres`` user when the tests run as root: PostgreSQL refuses to run as root."""

    def __init__(self, bindir: Path, as_user: list[str], root: Path):
        self.bindir, self.as_user, self.root = bindir, as_user, root
        self.port = process.free_port()
        self.databases = itertools.count()

    def run(self, tool: str, *args: str) -> None:
        r = subprocess.run([*self.as_user, str(self.bindir / tool), *args], cwd=self.root,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode:
            log = self.root / "server.log"
            raise RuntimeError(f"{tool} failed ({r.returncode}): {r.stdout.decode(errors='replace')}"
                               + (log.read_text(errors="replace") if log.exists() else ""))

    def start(self) -> None:
        data = self.root / "data"
        self.run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        self.run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                 "-o", f"-p {self.port} -k {self.root} -h 127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")

    def new_database(self) -> str:
        """A fresh, empty database's SQLAlchemy URL."""
        import psycopg

        name = f"nnplay_{next(self.databases)}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


def _postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    exe = shutil.which("pg_ctl")
    return Path(exe).parent if exe else None


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the whole run, always stopped and removed; skipped only when its
    binaries or the driver are absent."""
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (make test installs Debian's postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[test]')")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="nnplay-pg-"))  # short: the socket path must fit 107 bytes
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    server = PostgresServer(bindir, as_user, root)
    try:
        server.start()
        yield server
    finally:
        try:
            if (root / "data" / "postmaster.pid").exists():
                server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
