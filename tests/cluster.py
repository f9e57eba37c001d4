"""Several hosts on this machine: web servers and task workers sharing one set of services.

What a deployment on several hosts runs (README, "Deploying on several hosts"), started for
real by a test: ``web_servers`` gunicorn servers with the production settings
(``config/gunicorn.conf.py``, ``DJANGO_DEBUG=0``), each on its own free port with
``WEB_CONCURRENCY`` workers, and ``workers`` task workers (``worker_command``), all against

- ONE PostgreSQL database: the test's own (``tests.processes.shared_database_url``), so the
  test reads what the hosts wrote and the hosts read what the test wrote (the test must commit:
  ``django_db(transaction=True)``);
- ONE S3 server (SeaweedFS, ``tests/s3server.py``) with its public and its private quarantine
  bucket, configured by the same variables a deployment sets;
- ONE Redis, in a database number this run claims (``claimed_redis_db``), so runs in parallel
  never count each other's uploads and no run inherits another's counters.

Every process writes its output to a file; ``Cluster.describe()`` shows all of them, and every
wait that fails shows them (a dead process fails the wait at once, with its output). Start-up
waits on readiness, never on sleeps: a web server is up when it answers a page, a worker when
it says it is polling the queue. ``stop()`` ends every process the cluster started, and only
those.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.processes import shared_database_url
from tests.s3server import SeaweedS3, _die_with_parent, free_ports

ROOT = Path(settings.BASE_DIR)
MANAGE = ROOT / "manage.py"

# Start-up of a Django process on a busy two-core machine, and any one wait in a test.
START_TIMEOUT = 60
WAIT_TIMEOUT = 45

# What every host is given (docs/operations.md, "Several hosts"): the same secret on every host
# (a login's session hash and the signed message cookie made on one host are checked on another).
SECRET_KEY = "cluster-test-secret-2f9c7e1a5b3d8f6e0a4c9b7d1e3f5a7c9e1b3d5f"
ALLOWED_HOSTS = "127.0.0.1,localhost"
WEB_CONCURRENCY = 2
# Gunicorn's access log with the worker's pid, so a test can tell which process answered.
ACCESS_LOG_FORMAT = 'access pid=%(p)s "%(r)s" %(s)s'
ACCESS_LINE = re.compile(
    r'access pid=<(?P<pid>\d+)> "(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+)'
)
BOOTED_WORKER = re.compile(r"Booting worker with pid: (\d+)")

# Redis: database 0 is a developer's own; the tests claim one of the others each.
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DBS = range(1, 16)
REDIS_CLAIM_KEY = "moderation-tests:claimed-by"
REDIS_CLAIM_SECONDS = 900  # a crashed run frees its database after this


def own_host(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a process that stands for a host of its own: its own local folder for the
    banned set's snapshot (hosts share no disk), removed when the test process exits."""
    folder = tempfile.mkdtemp(prefix="moderation-host-snapshot-")
    atexit.register(shutil.rmtree, folder, True)
    return {**env, "MODERATION_SNAPSHOT_DIR": folder}


def worker_command(worker_id: str) -> tuple[list[str], str]:
    """The task worker a worker host runs (``manage.py`` arguments), and the line its output
    shows once it polls the queue. The one place to change when the worker command changes."""
    return (
        [
            "run_worker",
            "--no-startup-delay",
            "--interval=0.1",
            f"--worker-id={worker_id}",
            "--verbosity=1",
        ],
        f"Starting worker worker_id={worker_id}",
    )


def site_env(static_root: Path | None) -> dict[str, str]:
    """This process's environment, minus anything that configures the site, plus what every
    production host sets whatever it runs: debug off, the secret, the host names."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "MODERATION_", "AWS_", "DATABASE_", "GUNICORN_"))
        and name not in ("WEB_CONCURRENCY", "PORT")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS=ALLOWED_HOSTS,
        PYTHONUNBUFFERED="1",
    )
    if static_root is not None:
        env["DJANGO_STATIC_ROOT"] = str(static_root)
    return env


def production_env(
    *, database_url: str, s3: SeaweedS3, redis_url: str | None, static_root: Path | None
) -> dict[str, str]:
    """The environment of every host: ``site_env`` pointed at the shared services."""
    env = site_env(static_root)
    env.update(DATABASE_URL=database_url, MODERATION_TASKS_BACKEND="database", **s3.env())
    if redis_url is not None:
        env["DJANGO_CACHE_URL"] = redis_url
    return env


class Service:
    """One long-running process with its output in a file (never a pipe that could fill)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            mode="w+b", prefix=f"cluster-{name}-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - the test process starts no threads here
        )

    def output(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return f"=== {self.name} ({state}): {' '.join(self.argv)}\n{self.output()}"

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (gunicorn and the worker finish what they are doing), SIGKILL after
        ``grace`` seconds; safe to call twice."""
        self.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(grace)
        if not self._log.closed:
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


class WebServer(Service):
    """``gunicorn -c config/gunicorn.conf.py config.wsgi`` on its own loopback port."""

    def __init__(self, name: str, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        super().__init__(
            name,
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "config" / "gunicorn.conf.py"),
                "--access-logformat",
                ACCESS_LOG_FORMAT,
                "config.wsgi",
            ],
            {
                **env,
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": str(WEB_CONCURRENCY),
            },
        )

    def ready(self) -> bool:
        """Answers a page as the proxy would forward it (HTTPS ended in front of it)."""
        request = urllib.request.Request(
            f"{self.url}/login/", headers={"X-Forwarded-Proto": "https"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def worker_pids(self) -> set[int]:
        """The pids of the gunicorn workers this server booted."""
        return {int(pid) for pid in BOOTED_WORKER.findall(self.output())}

    def answered(self, method: str, path: str, *, after: int = 0) -> list[tuple[int, int]]:
        """(worker pid, status) of each ``method path`` request in the access log, from byte
        ``after`` of the output on (``log_size()`` before the requests)."""
        text = self.log_path.read_bytes()[after:].decode("utf-8", "replace")
        # With production settings the access log is JSON lines; the access line is the message.
        messages = [
            json.loads(line).get("message", "") if line.startswith("{") else line
            for line in text.splitlines()
        ]
        return [
            (int(m["pid"]), int(m["status"]))
            for m in map(ACCESS_LINE.search, messages)
            if m and m["method"] == method and m["path"] == path
        ]

    def log_size(self) -> int:
        return self.log_path.stat().st_size


class Worker(Service):
    def __init__(self, name: str, worker_id: str, env: dict[str, str]) -> None:
        self.worker_id = worker_id
        args, self.ready_line = worker_command(worker_id)
        super().__init__(name, [sys.executable, str(MANAGE), *args], env)

    def ready(self) -> bool:
        return self.ready_line in self.output()


@dataclass
class Cluster:
    env: dict[str, str]
    web: list[WebServer] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    started_in: float = 0.0  # seconds from the first process started to the last one ready

    @property
    def services(self) -> list[Service]:
        return [*self.web, *self.workers]

    @property
    def worker_ids(self) -> set[str]:
        return {w.worker_id for w in self.workers}

    def describe(self) -> str:
        head = f"cluster: {len(self.web)} web server(s), {len(self.workers)} worker(s), "
        head += f"ready in {self.started_in:.1f} s" if self.started_in else "not ready"
        return "\n".join([head, *(s.describe() for s in self.services)])

    def wait_for(self, condition: Callable[[], Any], *, what: str, timeout: float = WAIT_TIMEOUT):
        """Poll ``condition`` until it returns something truthy. Fails, with every process's
        output, after ``timeout`` seconds or as soon as one of the processes has died."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            dead = [s for s in self.services if not s.alive()]
            if dead:
                pytest.fail(
                    f"waiting for {what}, but {dead[0].name} died:\n{self.describe()}",
                    pytrace=False,
                )
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"timed out after {timeout:.0f} s waiting for {what}\n{self.describe()}",
                    pytrace=False,
                )
            time.sleep(0.1)

    def manage(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """``manage.py <args>`` run as an operator runs it on one of the hosts (``env``: extra
        settings for this command only)."""
        proc = subprocess.run(
            [sys.executable, str(MANAGE), *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"manage.py {' '.join(args)} exited with {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def wait_for_idle_queue(self, *, what: str = "every queued task to finish") -> list:
        """Wait until no task is waiting or running; fail if any task failed. Returns every
        task result row. A task queued to run more than an hour from now (the purge of a
        taken-down photo's kept copy, months away) is not work the queue owes now: it counts
        neither as waiting nor as failed."""
        from datetime import timedelta

        from django.utils import timezone
        from django_tasks_db.models import DBTaskResult

        def later(row) -> bool:
            return row.status == "READY" and row.run_after > timezone.now() + timedelta(hours=1)

        def idle():
            rows = list(DBTaskResult.objects.all())
            return rows if all(r.finished_at is not None or later(r) for r in rows) else None

        rows = self.wait_for(idle, what=what)
        failed = [r for r in rows if r.status != "SUCCESSFUL" and not later(r)]
        if failed:
            pytest.fail(
                f"task {failed[0].task_path} {failed[0].status}:\n{failed[0].traceback}\n"
                f"{self.describe()}",
                pytrace=False,
            )
        return rows

    def stop(self) -> None:
        for service in self.services:  # all at once: the graceful stops overlap
            service.terminate()
        for service in self.services:
            service.stop()

    def cleanup(self) -> None:
        self.stop()
        for service in self.services:
            service.cleanup()


def collect_static(static_root: Path) -> None:
    """``collectstatic`` as a deploy runs it: the production static storage serves from the
    manifest it writes (the admin's pages fail without it)."""
    proc = subprocess.run(
        [sys.executable, str(MANAGE), "collectstatic", "--noinput", "--verbosity=0"],
        cwd=ROOT,
        env=site_env(static_root),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.fail(f"collectstatic failed:\n{proc.stdout}\n{proc.stderr}")


@contextlib.contextmanager
def start_cluster(
    *,
    s3: SeaweedS3,
    static_root: Path | None,
    redis_url: str | None,
    web_servers: int = 2,
    workers: int = 2,
) -> Iterator[Cluster]:
    """Start the hosts, wait until every one is ready, and stop them all on the way out.

    ``static_root`` must hold ``collect_static``'s output when ``web_servers`` > 0; worker
    hosts serve no pages and need none. ``redis_url`` None: the default per-process cache.
    """
    env = production_env(
        database_url=shared_database_url(), s3=s3, redis_url=redis_url, static_root=static_root
    )
    cluster = Cluster(env=env)
    began = time.monotonic()
    run = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        for port, letter in zip(free_ports(web_servers), "abcdefgh"):
            cluster.web.append(WebServer(f"web-{letter}", port, own_host(env)))
        for number in range(1, workers + 1):
            cluster.workers.append(
                Worker(f"worker-{number}", f"worker-{number}-{run}", own_host(env))
            )
        for service in cluster.services:
            cluster.wait_for(
                service.ready, what=f"{service.name} to be ready", timeout=START_TIMEOUT
            )
        cluster.started_in = time.monotonic() - began
        yield cluster
    finally:
        cluster.stop()
        # Shown by pytest when the test failed ("Captured stdout teardown").
        print(cluster.describe())
        cluster.cleanup()


def _redis_reachable() -> bool:
    try:
        socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def claimed_redis_db() -> Iterator[str]:
    """A Redis database number this run alone uses, emptied before and after: a claim key set
    only if absent (``SET NX``, expiring in case the run dies), so parallel runs pick different
    databases. Skips (fails in CI) when Redis is not running."""
    if not _redis_reachable():
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT}", pytrace=False)
        pytest.skip(f"needs Redis on {REDIS_HOST}:{REDIS_PORT}")
    import redis

    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    for db in REDIS_DBS:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        if not client.set(REDIS_CLAIM_KEY, token, nx=True, ex=REDIS_CLAIM_SECONDS):
            client.close()
            continue
        try:
            # Whatever an earlier run left (rate-limit counters) goes; the claim stays.
            client.pipeline(transaction=True).flushdb().set(
                REDIS_CLAIM_KEY, token, ex=REDIS_CLAIM_SECONDS
            ).execute()
            yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
        finally:
            if client.get(REDIS_CLAIM_KEY) == token.encode():
                client.flushdb()
            client.close()
        return
    pytest.fail(f"every Redis database {REDIS_DBS.start}-{REDIS_DBS.stop - 1} is claimed")
