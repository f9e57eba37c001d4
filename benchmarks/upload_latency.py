"""End-to-end upload latency of the real profile view with a large banned set, and cold load.

    python benchmarks/upload_latency.py [--banned 1000000] [--concurrency 4] [--requests 200]
        [--database-url postgres://postgres@127.0.0.1:5432/moderation_bench] [--photos DIR]

What it does, all on this machine:
1. Creates (or reuses) a benchmark database — PostgreSQL by default, as in production — and
   fills it with N banned fingerprints shaped like a real banned set (the clustered generator
   of benchmarks/lookup.py). Re-runs reuse the rows when N matches.
2. Cold load: how long a fresh process's banned set takes to load all N from the database.
3. Starts gunicorn on 127.0.0.1 (2 workers x 2 threads, the 2-core machine's sensible setting),
   logs in CONCURRENCY users, warms every worker (each loads the banned set once), then has each
   user upload distinct ~2 MP JPEGs through the real /profile/ form, CONCURRENCY at a time,
   and reports p50/p90/p99/max latency and throughput. Every upload is fingerprinted, looked up
   among the N banned fingerprints, re-encoded, stored, and re-checked after commit.

Not part of the test run. Numbers in the README come from this script.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "benchmark-" + uuid.uuid4().hex * 2
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--banned", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200, help="uploads in total")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/moderation_bench"
    )
    parser.add_argument("--photos", default=str(ROOT.parent / "shared" / "corpus" / "photos"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def ensure_postgres_database(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    import psycopg

    name = parts.path.lstrip("/")
    admin = parts._replace(scheme="postgresql", path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(args: argparse.Namespace, media: Path) -> None:
    os.environ["DATABASE_URL"] = args.database_url
    # The same key as the server, so sessions made here are valid there.
    os.environ["DJANGO_SECRET_KEY"] = SECRET_KEY
    os.environ["DJANGO_STATIC_ROOT"] = str(media / "static")
    os.environ["DJANGO_MEDIA_ROOT"] = str(media / "media")
    os.environ["MODERATION_QUARANTINE_ROOT"] = str(media / "quarantine")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)


def fill_banned_set(n: int) -> None:
    """N index entries: N / KEYS_PER_FLAG flags, each with every variant (as flagging stores:
    8 orientations and the crops of ``variants.VARIANTS``).

    Variant dHashes come from the clustered generator; pHashes are random, as an unrelated
    upload's would be relative to them (a dHash candidate is then rejected by confirmation).
    """
    import numpy as np
    from django.db import connection, transaction

    from benchmarks.lookup import clustered_hashes
    from moderation.hashing import PIPELINE_VERSION, to_signed
    from moderation.matching import KEYS_PER_FLAG as per_flag
    from moderation.models import FingerprintVariant, FlaggedFingerprint

    flags = n // per_flag
    n = flags * per_flag
    stored = FingerprintVariant.objects.filter(flagged__active=True, phash__isnull=False)
    if stored.count() == n:
        print(f"reusing {n:,} banned fingerprints already in the benchmark database")
        return
    print(f"inserting {flags:,} flags x {per_flag} variants = {n:,} clustered fingerprints ...")
    started = time.perf_counter()
    rng = np.random.default_rng(7)
    dhashes = rng.permutation(np.unique(clustered_hashes(n * 2, rng)))[:n]
    phashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    with transaction.atomic():
        # A benchmark database: start the banned set (and everything pointing at it) afresh.
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"TRUNCATE {FlaggedFingerprint._meta.db_table} CASCADE")
            else:
                raise SystemExit("refilling needs PostgreSQL; use a new SQLite file instead")
        for first in range(0, flags, 5_000):
            batch = [
                FlaggedFingerprint(
                    dhash=to_signed(int(dhashes[i * per_flag])),
                    pipeline_version=PIPELINE_VERSION,
                    information=64,
                    reason="benchmark",
                    source=FlaggedFingerprint.Source.COMMAND,
                )
                for i in range(first, min(first + 5_000, flags))
            ]
            created = FlaggedFingerprint.objects.bulk_create(batch)
            FingerprintVariant.objects.bulk_create(
                FingerprintVariant(
                    flagged=flag,
                    variant=v,
                    dhash=to_signed(int(dhashes[(first + k) * per_flag + v])),
                    phash=to_signed(int(phashes[(first + k) * per_flag + v])),
                )
                for k, flag in enumerate(created)
                for v in range(per_flag)
            )
    print(f"  done in {time.perf_counter() - started:.1f} s")


def measure_cold_load() -> tuple[float, int]:
    from moderation import matching

    matching.reset_banned_set()
    started = time.perf_counter()
    matching.banned_set().sync()
    return time.perf_counter() - started, len(matching.banned_set())


def make_photos(folder: Path, count: int) -> list[bytes]:
    """Distinct ~2 MP JPEGs: corpus photos at 2 MP, each lightly varied so none repeats."""
    from PIL import Image, ImageDraw

    sources = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"})
    if not sources:
        raise SystemExit(f"no photos in {folder}")
    photos = []
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as im:
            im = im.convert("RGB")
            scale = (2_000_000 / (im.width * im.height)) ** 0.5
            im = im.resize((int(im.width * scale), int(im.height * scale)))
            ImageDraw.Draw(im).text((10, 10), f"upload {i}", fill=(255, 255, 0))
            out = io.BytesIO()
            im.save(out, "JPEG", quality=88)
            photos.append(out.getvalue())
    return photos


class Session:
    """One logged-in user talking HTTP/1.1 to the server, as a browser would."""

    def __init__(self, port: int, sessionid: str) -> None:
        self.port = port
        self.cookies = {"sessionid": sessionid}
        self._token: str | None = None

    def _request(self, method: str, path: str, body: bytes | None = None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers={"Cookie": cookie, **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        conn.close()
        return response.status, data

    def csrf_token(self) -> str:
        """The form's CSRF token, read once: it stays valid for the session's csrftoken."""
        if self._token is None:
            status, page = self._request("GET", "/profile/")
            found = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
            if status != 200 or not found:
                raise SystemExit(f"GET /profile/ answered {status}: {page[:300]!r}")
            self._token = found.group(1).decode()
        return self._token

    def upload(self, photo: bytes) -> tuple[int, float]:
        """POST one photo; the timed part is the upload request alone."""
        token = self.csrf_token()
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
            f"{token}\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="display_name"\r\n\r\n'
            "bench\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; '
            f'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + photo
            + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        body = b"".join(parts)
        started = time.perf_counter()
        status, _ = self._request(
            "POST",
            "/profile/",
            body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}", "Referer": "/profile/"},
        )
        return status, time.perf_counter() - started


def start_server(args, media: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_STATIC_ROOT": str(media / "static"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_MEDIA_ROOT": str(media / "media"),
        "MODERATION_QUARANTINE_ROOT": str(media / "quarantine"),
        "MODERATION_MAX_REQUEST_BYTES": str(64 * 1024 * 1024),
        # As in production: the post-upload re-check goes to the task worker (none runs here;
        # the tasks wait in the database), not into the request.
        "MODERATION_TASKS_BACKEND": "database",
        # The benchmark is one IP uploading far past the per-hour limits on purpose.
        "MODERATION_UPLOAD_RATE_PER_USER": "0",
        "MODERATION_UPLOAD_RATE_PER_IP": "0",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return subprocess.Popen(
        [
            str(gunicorn),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    args = parse_args()
    ensure_postgres_database(args.database_url)
    media = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    setup_django(args, media)
    fill_banned_set(args.banned)

    seconds, loaded = measure_cold_load()
    print(f"cold load: {loaded:,} fingerprints in {seconds:.2f} s  "
          f"({args.database_url.split('@')[-1]})")

    from django.contrib.auth import get_user_model
    from django.test import Client

    users = []
    for i in range(args.concurrency):
        user, _ = get_user_model().objects.get_or_create(username=f"bench{i}")
        client = Client()
        client.force_login(user)
        users.append(client.cookies["sessionid"].value)
    photos = make_photos(Path(args.photos), args.requests + args.workers * args.threads * 2)
    port = free_port()
    server = start_server(args, media, port)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/")
                break
            except OSError:
                time.sleep(0.2)
        # Warm every worker: each loads the banned set on its first lookup.
        warm = Session(port, users[0])
        warm_times = []
        for photo in photos[args.requests :]:
            status, took = warm.upload(photo)
            warm_times.append(took)
            if status not in (200, 302):  # 302 stored, 200 refused (form shown again)
                raise SystemExit(f"warm-up upload answered {status}")
        print(f"warm-up: slowest {max(warm_times):.2f} s (a worker's first lookup loads the set)")

        latencies: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        queue = list(range(args.requests))

        def client_loop(sessionid: str) -> None:
            session = Session(port, sessionid)
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                status, took = session.upload(photos[i])
                with lock:
                    latencies.append(took)
                    statuses[status] = statuses.get(status, 0) + 1

        started = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)

    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(round(p / 100 * (len(latencies) - 1))))]

    print(
        f"\nupload of a ~2 MP JPEG through /profile/, {args.banned:,} banned fingerprints, "
        f"{args.concurrency} concurrent users, gunicorn {args.workers}x{args.threads}:"
    )
    rate = len(latencies) / wall
    stored, refused = statuses.get(302, 0), statuses.get(200, 0)
    other = sum(statuses.values()) - stored - refused
    print(
        f"  requests {len(latencies)}  stored (302) {stored}  refused (200) {refused}  "
        f"other {other}  throughput {rate:.1f}/s"
    )
    print(
        f"  p50 {pct(50) * 1000:.0f} ms   p90 {pct(90) * 1000:.0f} ms   "
        f"p99 {pct(99) * 1000:.0f} ms   max {latencies[-1] * 1000:.0f} ms   "
        f"mean {statistics.mean(latencies) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
