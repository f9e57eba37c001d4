"""``/ready`` tells a load balancer the truth about the services behind a web process.

A real deployment in miniature: gunicorn with the production settings, on a PostgreSQL cluster,
a Redis server and a SeaweedFS S3 server of this module's own (tests/private_services.py,
tests/s3server.py), so each can be stopped without disturbing anything else. Stopping one makes
``/ready`` answer 503 naming it; starting it again makes ``/ready`` answer 200 again, without
restarting the web process. ``/live`` answers 200 throughout: an orchestrator must not restart
web processes because a service behind them is down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.private_postgres import PrivateCluster, free_port
from tests.private_services import PrivateRedis, accepts_connections
from tests.s3server import start_server
from tests.test_production_settings import PRODUCTION_ENV

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 60


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Deployment:
    def __init__(self, workdir: Path) -> None:
        (workdir / "redis").mkdir()
        self.workdir = workdir
        self.web = self.s3 = None
        self.postgres = PrivateCluster()
        self.redis = PrivateRedis(workdir / "redis")

    def start(self) -> None:
        workdir = self.workdir
        self.postgres.start()
        self.redis.start()
        self.s3 = start_server(workdir / "s3")
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "DATABASE_", "AWS_", "MODERATION_", "SENTRY_"))
        }
        self.env = {
            **base,
            **PRODUCTION_ENV,
            **self.s3.env(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_CACHE_URL": self.redis.url,
            "DATABASE_URL": self.postgres.url,
            "MODERATION_SNAPSHOT_DIR": str(workdir / "snapshots"),
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        self.port = free_port()
        self.log_path = workdir / "gunicorn.log"
        self.log = self.log_path.open("wb")
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
            cwd=ROOT,
            env={
                **self.env,
                "GUNICORN_BIND": f"127.0.0.1:{self.port}",
                "WEB_CONCURRENCY": "1",
                "GUNICORN_TIMEOUT": "120",
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + WAIT_SECONDS
        while not accepts_connections(self.port):
            assert self.web.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)

    def ready(self) -> tuple[int, dict]:
        return get(f"http://127.0.0.1:{self.port}/ready")

    def live(self) -> tuple[int, dict]:
        return get(f"http://127.0.0.1:{self.port}/live")

    def wait_until(self, status: int) -> dict:
        """The body of the first /ready answer with ``status`` (within WAIT_SECONDS)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            answer, body = self.ready()
            if answer == status:
                return body
            assert time.monotonic() < deadline, f"/ready stayed {answer}: {body}"
            time.sleep(0.5)

    def close(self) -> None:
        if self.web is not None:
            self.web.terminate()
            self.web.wait(timeout=30)
            self.log.close()
        if self.s3 is not None:
            self.s3.stop()
        self.redis.stop()
        self.postgres.remove()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("deployment"))
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.close()


def failing(body: dict) -> set[str]:
    return {name for name, state in body["checks"].items() if state != "OK"}


def test_ready_when_every_service_answers(deployment):
    status, body = deployment.ready()

    assert status == 200, body
    assert body["ready"] is True and failing(body) == set()
    assert set(body["checks"]) == {
        "database",
        "cache",
        "storage",
        "quarantine",
        "task_workers",
        "banned_set",
        "hash_lists",
    }


def test_not_ready_while_postgresql_is_stopped_and_ready_once_it_is_back(deployment):
    deployment.postgres.stop()
    try:
        body = deployment.wait_until(503)
        assert {"database", "banned_set", "hash_lists"} <= failing(body)
        assert failing(body) <= {"database", "banned_set", "hash_lists", "task_workers"}
        assert str(deployment.postgres.port) not in json.dumps(body)
        assert deployment.live() == (200, {"alive": True})
    finally:
        deployment.postgres.start()
    assert deployment.wait_until(200)["ready"] is True


def test_not_ready_while_redis_is_stopped_and_ready_once_it_is_back(deployment):
    deployment.redis.stop()
    try:
        body = deployment.wait_until(503)
        assert failing(body) == {"cache"}
        assert deployment.live() == (200, {"alive": True})
    finally:
        deployment.redis.start()
    assert deployment.wait_until(200)["ready"] is True


def test_not_ready_while_the_s3_server_is_stopped_and_ready_once_it_is_back(deployment):
    deployment.s3.stop()
    try:
        body = deployment.wait_until(503)
        assert failing(body) == {"storage", "quarantine"}
        assert deployment.live() == (200, {"alive": True})
    finally:
        deployment.s3.start()
    assert deployment.wait_until(200)["ready"] is True


def test_the_answer_names_no_host_port_or_key(deployment):
    deployment.redis.stop()
    try:
        body = deployment.wait_until(503)
    finally:
        deployment.redis.start()
    text = json.dumps(body)
    for secret in (
        str(deployment.redis.port),
        str(deployment.postgres.port),
        deployment.s3.secret_key,
        deployment.s3.access_key,
        "127.0.0.1",
    ):
        assert secret not in text


def test_the_web_process_logs_only_json_lines(deployment):
    """gunicorn's start-up and access lines and the site's own (here: the failed checks while
    services were down) all parse as JSON, one object per line."""
    deployment.ready()
    deployment.log.flush()
    lines = deployment.log_path.read_text().splitlines()

    parsed = [json.loads(line) for line in lines]
    loggers = {line["logger"] for line in parsed}
    assert {"gunicorn.error", "gunicorn.access", "health_check"} <= loggers
    assert any("GET /ready" in line["message"] for line in parsed)
