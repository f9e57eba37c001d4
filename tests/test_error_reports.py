"""Errors in production are not lost: a failing view's traceback is one JSON line on stderr, and
reaches Sentry when a DSN is set; moderation decisions are structured log events.

Each case runs in a fresh Python process with the production settings (``DJANGO_DEBUG=0``), as
gunicorn would load them, and sends a request through Django's whole handler and middleware
stack to a view that raises (tests/raising_urls.py). Sentry is a local HTTP server that records
what the SDK posts: the real SDK, the real transport, no network.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.raising_urls import ERROR_TEXT
from tests.test_production_settings import PRODUCTION_ENV

ROOT = Path(__file__).resolve().parent.parent

# Calls the WSGI application gunicorn serves (config/wsgi.py) with a request for /fails.
REQUEST_A_FAILING_VIEW = """
import io, wsgiref.util
from django.test.utils import override_settings
from config.wsgi import application

environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/fails", "HTTP_HOST": "profiles.example.com",
           "HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_REQUEST_ID": "req-0123456789",
           "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO()}
wsgiref.util.setup_testing_defaults(environ)
answer = {}
with override_settings(ROOT_URLCONF="tests.raising_urls"):
    body = b"".join(application(environ, lambda status, headers: answer.update(
        status=status, headers=dict(headers))))
print("STATUS", answer["status"].split()[0], answer["headers"].get("X-Request-ID"))
import sentry_sdk
sentry_sdk.flush(timeout=10)
"""


def run_production(code: str, **extra_env: str) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "SENTRY_", "DATABASE_URL"))
    }
    env = {
        **base,
        **PRODUCTION_ENV,
        "DJANGO_CACHE_URL": "locmem",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def test_a_failing_view_writes_its_traceback_as_one_json_line_on_stderr():
    result = run_production(REQUEST_A_FAILING_VIEW)

    assert "STATUS 500 req-0123456789" in result.stdout, result.stdout + result.stderr
    lines = json_lines(result.stderr)  # every line of stderr parses as JSON
    [error] = [line for line in lines if line["logger"] == "django.request"]
    assert error["level"] == "ERROR"
    assert error["message"] == "Internal Server Error: /fails"
    assert error["status_code"] == 500
    assert error["request_id"] == "req-0123456789"
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert f"RuntimeError: {ERROR_TEXT}" in error["exception"]
    assert "failing_view" in error["exception"]
    assert error["time"].endswith("+00:00")


def test_a_request_id_from_the_client_that_is_not_an_id_is_replaced():
    code = REQUEST_A_FAILING_VIEW.replace("req-0123456789", "bad id\\nforged line")
    result = run_production(code)

    [error] = [line for line in json_lines(result.stderr) if line["logger"] == "django.request"]
    assert len(error["request_id"]) == 32 and "forged" not in result.stderr


class RecordingSentry(BaseHTTPRequestHandler):
    """Stands in for Sentry's ingest endpoint: keeps every envelope posted to it."""

    received: list[tuple[str, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_stand_in():
    RecordingSentry.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingSentry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def envelope_items(body: bytes) -> list[tuple[dict, dict]]:
    """(item header, item payload) of a Sentry envelope: a header line, then header/payload
    line pairs (payloads here are JSON)."""
    lines = body.split(b"\n")[1:]
    items = []
    while len(lines) >= 2 and lines[0].strip():
        header = json.loads(lines[0])
        payload = lines[1]
        items.append((header, json.loads(payload) if payload.startswith(b"{") else {}))
        lines = lines[2:]
    return items


def test_sentry_receives_the_failing_views_error_when_a_dsn_is_set(sentry_stand_in):
    port = sentry_stand_in.server_address[1]
    result = run_production(
        REQUEST_A_FAILING_VIEW, SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/7"
    )

    assert "STATUS 500" in result.stdout, result.stdout + result.stderr
    events = [
        payload
        for path, body in RecordingSentry.received
        if path.startswith("/api/7/envelope/")
        for header, payload in envelope_items(body)
        if header.get("type") == "event"
    ]
    errors = [e for e in events if e.get("exception")]
    assert errors, RecordingSentry.received
    exception = errors[0]["exception"]["values"][-1]
    assert (exception["type"], exception["value"]) == ("RuntimeError", ERROR_TEXT)
    assert errors[0]["request"]["url"].endswith("/fails")
    # No personal data: no cookies, no client IP.
    assert "cookies" not in errors[0]["request"]
    assert "ip_address" not in errors[0].get("user", {})


def test_sentry_is_off_without_a_dsn():
    code = "import django; django.setup(); import sentry_sdk; print(sentry_sdk.is_initialized())"

    assert run_production(code).stdout.split() == ["False"]
    assert run_production(code, SENTRY_DSN="http://k@127.0.0.1:9/1").stdout.split() == ["True"]


def test_production_logs_decision_events_and_a_local_terminal_does_not():
    code = (
        "import django, logging; django.setup(); "
        "print(logging.getLogger('moderation.decisions').isEnabledFor(logging.INFO))"
    )

    assert run_production(code).stdout.split() == ["True"]
    local = run_production(code, DJANGO_DEBUG="1", DJANGO_LOG_FORMAT="text")
    assert local.stdout.split() == ["False"], local.stderr
