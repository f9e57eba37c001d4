"""A PostgreSQL cluster and a Redis server of a test's own, to stop and start at will.

The machine's PostgreSQL and Redis are shared with other work and must never be stopped by a
test. ``PrivatePostgres`` runs ``initdb`` into a temporary folder and serves it on a free port of
127.0.0.1 with the installed server's binaries (``pg_config --bindir``, else the newest
``/usr/lib/postgresql/*/bin``); ``initdb`` and the server refuse to run as root, so as root they
run as the ``postgres`` user (``runuser``), the folder owned by it. ``PrivateRedis`` runs
``redis-server`` on a free port with no persistence. Stopping keeps the data: ``start()`` again
serves the same cluster on the same port.

A machine without the binaries skips with the reason; with ``CI`` set that is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

START_TIMEOUT = 60


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"a private service is needed in CI: {reason}", pytrace=False)
    pytest.skip(f"NOT RUN: {reason}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        if out.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class PrivatePostgres:
    """``initdb`` in a new temporary folder (not under pytest's, which only root may enter),
    served on a free port (trust auth, user ``postgres``); ``remove()`` deletes it."""

    def __init__(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="private-postgres-"))
        self.workdir = workdir
        self.bindir = postgres_bindir()
        if self.bindir is None:
            unavailable("no PostgreSQL server binaries (initdb) on this machine")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and there is no postgres user to run initdb as")
            self.as_user = ["runuser", "-u", "postgres", "--"]
            os.chown(workdir, owner.pw_uid, owner.pw_gid)
        self.datadir = workdir / "data"
        self.log = workdir / "server.log"
        self.port = free_port()
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [*self.as_user, str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.datadir} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.log), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` on a free port, in memory only."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            unavailable("no redis-server on PATH (apt-get install redis-server)")
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts_connections(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None
