"""A PostgreSQL cluster of a test's own, to restart under a running worker.

The machine's cluster (the one ``DATABASE_URL`` names) is shared with other work and must
never be restarted by a test. ``PrivateCluster`` runs ``initdb`` into a temporary folder and
serves it on a free port of 127.0.0.1, with the same binaries as the installed server
(``pg_config --bindir``, else ``/usr/lib/postgresql/*/bin``). ``initdb`` and the server refuse
to run as root, so as root they run as the ``postgres`` user (``runuser -u postgres --``),
the folder owned by it. Anyone else, or a machine without the binaries, is skipped with the
reason; with ``CI`` set that is a failure instead.

``use_private_database`` points this process's default connection (and so the processes it
starts, see ``tests/processes.py``) at a copy of the test database made on the cluster, and
back afterwards, so a test's fixtures, flows and checks run unchanged against it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

START_TIMEOUT = 60
TEMPLATE_COPY = "template_copy"  # the test database as copied once; each test clones it


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"a private PostgreSQL cluster is needed in CI: {reason}")
    pytest.skip(f"NOT RUN: no private PostgreSQL cluster: {reason}")


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        if out.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateCluster:
    """One ``initdb``'d cluster in a temporary folder: start, restart, stop, remove."""

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            _unavailable("no initdb (pg_config --bindir, /usr/lib/postgresql/*/bin)")
        self.bindir = bindir
        if os.geteuid() == 0:
            try:
                postgres = pwd.getpwnam("postgres")
            except KeyError:
                _unavailable("running as root and there is no postgres user to run initdb")
            self._as = ["runuser", "-u", "postgres", "--"]
            owner = (postgres.pw_uid, postgres.pw_gid)
        elif pwd.getpwuid(os.geteuid()).pw_name == "postgres":
            self._as, owner = [], None
        else:
            _unavailable("initdb needs root (to run as postgres) or the postgres user")
        # Not under pytest's tmp_path: its parents are root's alone, postgres cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="private-pg-"))
        self.datadir = self.root / "data"
        self.port = free_port()
        self.restarts = 0
        if owner:
            os.chown(self.root, *owner)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")  # fmt: skip
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 40\n"
                "shared_buffers = 32MB\nfsync = on\n"
            )

    def _run(self, program: str, *args: str) -> str:
        proc = subprocess.run(
            [*self._as, str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT * 2,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"{program} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def pg_ctl(self, action: str, *args: str) -> None:
        log = str(self.root / "server.log")
        self._run("pg_ctl", action, "-D", str(self.datadir), "-l", log, "-w",
                  "-t", str(START_TIMEOUT), *args)  # fmt: skip

    def start(self) -> None:
        self.pg_ctl("start")

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m fast`` (clients disconnected, a checkpoint, a clean start) or
        ``-m immediate`` (every process killed at once, crash recovery at start); returns
        when it accepts connections again."""
        self.pg_ctl("restart", "-m", mode)
        self.restarts += 1

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self.pg_ctl("stop", "-m", "immediate")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def server_log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def copy_test_database(cluster: PrivateCluster, name: str) -> None:
    """A database ``name`` on the cluster holding what the test database holds now (its
    schema, content types, permissions): ``pg_dump`` of it into ``psql``."""
    sd = connection.settings_dict
    source = [
        str(cluster.bindir / "pg_dump"),
        "--no-owner",
        "--no-acl",
        "-h",
        sd.get("HOST") or "127.0.0.1",
        "-p",
        str(sd.get("PORT") or 5432),
        "-U",
        sd.get("USER") or "postgres",
        sd["NAME"],
    ]
    with cluster.admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "PGPASSWORD": sd.get("PASSWORD") or ""}
    dump = subprocess.run(source, capture_output=True, env=env, timeout=120, check=False)
    if dump.returncode != 0:
        pytest.fail(f"pg_dump of the test database failed: {dump.stderr.decode()}")
    load = subprocess.run(
        [
            str(cluster.bindir / "psql"),
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.port),
            "-U",
            "postgres",
            "-d",
            name,
        ],  # fmt: skip
        input=dump.stdout,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if load.returncode != 0:
        pytest.fail(f"loading the copy into the private cluster failed: {load.stderr.decode()}")


@contextlib.contextmanager
def use_private_database(cluster: PrivateCluster, name: str) -> Iterator[None]:
    """This process's default connection on the cluster's database ``name`` (a copy of the
    test database, made from its template), then back on the test database."""
    with cluster.admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_COPY}"')
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(cluster.port), NAME=name)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        with cluster.admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
