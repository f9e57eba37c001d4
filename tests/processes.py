"""Run ``manage.py`` as other processes on the test database (task worker, commands).

pytest-django creates a test database; a subprocess reaches it through ``DATABASE_URL`` built
from ``connection.settings_dict`` (on SQLite the test database is a file, see settings, so it
can be shared). Public media and quarantine folders are passed as ``DJANGO_MEDIA_ROOT`` and
``MODERATION_QUARANTINE_ROOT``, read from the test's (overridden) ``STORAGES``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

MANAGE = Path(settings.BASE_DIR) / "manage.py"

# Every wait is bounded: a command gets this long before the test fails with its output.
COMMAND_TIMEOUT = 60


def shared_database_url() -> str:
    """A DATABASE_URL for the test database this test process is connected to."""
    sd = connection.settings_dict
    if connection.vendor == "postgresql":
        user = urllib.parse.quote(sd.get("USER") or "", safe="")
        password = urllib.parse.quote(sd.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = sd.get("HOST") or "localhost"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = f":{sd['PORT']}" if sd.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{urllib.parse.quote(sd['NAME'], safe='')}"
    if connection.vendor == "sqlite":
        name = str(sd["NAME"])
        if connection.creation.is_in_memory_db(name):
            pytest.skip(
                "NOT RUN: the SQLite test database is in memory, so no other process can open "
                "it. config/settings.py makes it a file unless DATABASE_SQLITE_TEST_NAME says "
                "otherwise; unset DATABASE_SQLITE_TEST_NAME or run on PostgreSQL."
            )
        return f"sqlite:///{Path(name).resolve()}"
    pytest.fail(f"no DATABASE_URL form for the {connection.vendor} test database")


def _storage_location(alias: str) -> str:
    storage = settings.STORAGES[alias]
    if storage["BACKEND"] not in (
        "django.core.files.storage.FileSystemStorage",
        "moderation.storage.PrivateFileSystemStorage",
    ):
        pytest.fail(
            f"tests/processes.py shares only folders with subprocesses; STORAGES[{alias!r}] "
            f"is {storage['BACKEND']}"
        )
    return str(storage["OPTIONS"]["location"])


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment, pointed at the test database and the test's folders."""
    env = dict(os.environ)
    for name in list(env):
        # Whatever object storage the shell configured, the test's folders are what count.
        if name.startswith(("MODERATION_S3_", "AWS_")):
            del env[name]
    env.update(
        DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        DATABASE_URL=shared_database_url(),
        DJANGO_MEDIA_ROOT=_storage_location("default"),
        MODERATION_QUARANTINE_ROOT=_storage_location("quarantine"),
        MODERATION_MAX_DISTANCE=str(settings.MODERATION_MAX_DISTANCE),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(*args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run ``manage.py <args>`` in a new process and wait for it (bounded)."""
    proc = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        cwd=settings.BASE_DIR,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"manage.py {' '.join(args)} exited with {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


class ManageProcess:
    """A long-running ``manage.py`` process (e.g. ``db_worker``) with its output in a file.

    Output goes to a temporary file, not a pipe, so a chatty process can never block on a full
    pipe; ``output()`` reads it back for failure messages. ``stop()`` terminates it (SIGTERM,
    then SIGKILL after a grace period) and is safe to call twice.
    """

    def __init__(self, *args: str, **env: str) -> None:
        self.args = args
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            mode="w+b", prefix="manage-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(MANAGE), *args],
            cwd=settings.BASE_DIR,
            env=subprocess_env(**env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return Path(self._log.name).read_bytes().decode("utf-8", "replace")

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"manage.py {' '.join(self.args)} ({state}); its output:\n{self.output()}"

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(grace)
        if not self._log.closed:
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        Path(self._log.name).unlink(missing_ok=True)


def wait_for(
    condition: Callable[[], Any], *, timeout: float, what: str, process: ManageProcess | None = None
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.proc.poll() is not None:
            pytest.fail(f"waiting for {what}, but the process died: {process.describe()}")
        if time.monotonic() >= deadline:
            extra = f"\n{process.describe()}" if process is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(0.1)
