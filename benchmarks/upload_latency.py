"""End-to-end upload latency of the real profile view with a large banned set, and cold load.

    python benchmarks/upload_latency.py [--banned 1000000] [--concurrency 4] [--requests 200]
        [--database-url postgres://postgres@127.0.0.1:5432/moderation_bench] [--photos DIR]
        [--snapshot] [--pdq-list M] [--json]

What it does, all on this machine:
1. Creates (or reuses) a benchmark database — PostgreSQL by default, as in production — and
   fills it with N banned fingerprints shaped like a real banned set (the clustered generator
   of benchmarks/lookup.py). Re-runs reuse the rows when N matches.
   With ``--pdq-list M``, an enforced hash list also holds M PDQ entries, imported from a text
   file with ``manage.py import_hashes`` as a partner's list arrives (random hashes: none
   matches an upload, so each upload pays the PDQ lookup and nothing else).
2. Cold load: how long a fresh process's banned set takes to load all N from the database;
   with ``--snapshot``, ``manage.py banned_snapshot`` writes the host's snapshot first (as at
   deploy), the cold start is a process mapping it, and the web workers map it too (without
   it they each load their own copy from the database, as before snapshots).
3. Starts gunicorn on 127.0.0.1 with the production config (config/gunicorn.conf.py: with
   photos on disk, as here, one sync worker per core; --workers/--threads override), logs in
   CONCURRENCY users, warms every worker (each loads the banned set once), then has each user
   upload distinct ~2 MP JPEGs through the real /profile/ form, CONCURRENCY at a time, and
   reports p50/p90/p99/max latency, throughput, and the CPU time each upload cost the web
   workers, PostgreSQL and this client
   (read from /proc, so it stays meaningful on a busy machine, where latency does not), and
   how much of the cores' time the hypervisor gave to other guests (steal), and the mean
   latency that CPU alone sets (Little's law: with every core busy, CONCURRENCY x CPU per
   upload / cores), below which no number of workers or threads can go. Every
   upload is fingerprinted, looked up among the N banned fingerprints, re-encoded, stored, and
   its re-check is queued for the task worker.

4. Times the image work of one upload in this process (re-encoding and fingerprints, no
   database): the same work on any machine, printed so that runs on machines of different
   speed can be compared.

Not part of the test run. The numbers in docs/performance.md come from this script.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
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
    parser.add_argument(
        "--workers", type=int, default=None, help="default: config/gunicorn.conf.py's"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="default: config/gunicorn.conf.py's"
    )
    parser.add_argument(
        "--snapshot", action="store_true", help="workers map the host's banned-set snapshot"
    )
    parser.add_argument(
        "--pdq-list", type=int, default=0, help="PDQ entries in an enforced hash list"
    )
    parser.add_argument("--json", action="store_true", help="a JSON line of the figures, last")
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
    # Read by this process and inherited by the server's workers; empty: no snapshot.
    # The snapshot folder outlives the run (var/ is not in git): a rerun on the same database
    # finds its snapshot current instead of writing 10M entries again (minutes).
    folder = ROOT / "var" / "bench-snapshots" / args.database_url.rsplit("/", 1)[-1]
    os.environ["MODERATION_SNAPSHOT_DIR"] = str(folder) if args.snapshot else ""
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
    from moderation.banned_index import KEYS_PER_FLAG as per_flag
    from moderation.hashing import PIPELINE_VERSION, to_signed
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
            rows = [
                (
                    flag.pk,
                    v,
                    to_signed(int(dhashes[(first + k) * per_flag + v])),
                    to_signed(int(phashes[(first + k) * per_flag + v])),
                    "",  # no PDQ: these synthetic flags have no pixels
                )
                for k, flag in enumerate(created)
                for v in range(per_flag)
            ]
            # COPY, not bulk_create: 10M variant rows through INSERTs took most of an hour here.
            table = FingerprintVariant._meta.db_table
            columns = ", ".join(
                FingerprintVariant._meta.get_field(name).column
                for name in ("flagged", "variant", "dhash", "phash", "pdq")
            )
            with connection.cursor() as cursor:
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            if (first // 5_000) % 20 == 19:
                print(f"  {first + 5_000:,} flags in {time.perf_counter() - started:.0f} s")
    print(f"  done in {time.perf_counter() - started:.1f} s")


PDQ_LIST = "benchmark partner list"


def fill_pdq_list(n: int) -> None:
    """An enforced hash list of ``n`` random PDQ entries, imported as a partner's file is."""
    import numpy as np
    from django.core.management import call_command

    from moderation.models import SignalEntry

    held = SignalEntry.objects.filter(hash_list__name=PDQ_LIST, active=True).count()
    if held == n:
        print(f"reusing the {n:,} PDQ entries of {PDQ_LIST!r}")
        return
    print(f"importing {n:,} random PDQ entries into {PDQ_LIST!r} ...")
    started = time.perf_counter()
    rng = np.random.default_rng(11)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as out:
        for first in range(0, n, 100_000):
            block = rng.integers(0, 256, size=(min(100_000, n - first), 32), dtype=np.uint8)
            out.write("".join(row.tobytes().hex() + "\n" for row in block))
    try:
        # A later file without an entry retracts it, so a smaller rerun shrinks the list.
        call_command(
            "import_hashes", out.name, list_name=PDQ_LIST, source="benchmark", verbosity=0
        )
    finally:
        os.unlink(out.name)
    print(f"  done in {time.perf_counter() - started:.1f} s")


def measure_cold_load(snapshot: bool) -> tuple[float, int]:
    from moderation import banned_set

    banned_set.reset(snapshots=snapshot)
    started = time.perf_counter()
    banned_set.current().sync()
    return time.perf_counter() - started, len(banned_set.current())


def write_snapshot() -> str:
    """``manage.py banned_snapshot``, as a deploy runs it: its output line."""
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("banned_snapshot", stdout=out)
    return out.getvalue().strip()


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
    if args.workers is not None:
        env["WEB_CONCURRENCY"] = str(args.workers)
    if args.threads is not None:
        env["GUNICORN_THREADS"] = str(args.threads)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return subprocess.Popen(
        [
            str(gunicorn),
            "-c",
            str(ROOT / "config" / "gunicorn.conf.py"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            "120",
            "--access-logfile",
            os.devnull,
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )


def gunicorn_shape(args) -> tuple[int, int]:
    """(workers, threads) the server runs with: the arguments, else the production config's."""
    config: dict = {}
    exec((ROOT / "config" / "gunicorn.conf.py").read_text(), config)
    workers = args.workers if args.workers is not None else config["workers"]
    threads = args.threads if args.threads is not None else config["threads"]
    return workers, threads


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes so far, from /proc (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _CLOCK_TICKS


def stolen_seconds() -> float:
    """CPU time the hypervisor gave to other guests while this machine's cores wanted it
    ("steal" in /proc/stat, all cores together; 0 on bare metal or without /proc). A run
    with much of it was slowed by the host, not by the code."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def worker_pids(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return [master]
    return [master, *map(int, children)]


def postgres_backend_pids() -> list[int]:
    """The PostgreSQL server processes serving the benchmark database (same machine only)."""
    from django.db import connection

    if connection.vendor != "postgresql" or connection.settings_dict["HOST"] not in (
        "127.0.0.1",
        "localhost",
        "",
    ):
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


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
    if args.pdq_list:
        fill_pdq_list(args.pdq_list)
    if args.snapshot:
        print(f"banned_snapshot: {write_snapshot()}")

    seconds, loaded = measure_cold_load(args.snapshot)
    source = "mapping the snapshot" if args.snapshot else "from the database"
    print(
        f"cold load ({source}): {loaded:,} fingerprints in {seconds:.2f} s  "
        f"({args.database_url.split('@')[-1]})"
    )

    from django.contrib.auth import get_user_model
    from django.test import Client

    users = []
    for i in range(args.concurrency):
        user, _ = get_user_model().objects.get_or_create(username=f"bench{i}")
        client = Client()
        client.force_login(user)
        users.append(client.cookies["sessionid"].value)
    workers, threads = gunicorn_shape(args)
    slots = workers * threads
    photos = make_photos(Path(args.photos), args.requests + slots)
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
        # Warm every worker: each loads the banned set on its first lookup. Rounds of one
        # upload per worker slot at once, until a whole round is quick.
        warm_sessions = [Session(port, users[i % len(users)]) for i in range(slots)]
        warm_photos = photos[args.requests :]
        slowest: list[float] = []
        for round_ in range(30):
            took: list[float] = []

            def warm_one(session: Session, photo: bytes, took: list[float]) -> None:
                status, seconds = session.upload(photo)
                if status not in (200, 302):  # 302 stored, 200 refused (form shown again)
                    raise SystemExit(f"warm-up upload answered {status}")
                took.append(seconds)

            warmers = [
                threading.Thread(
                    target=warm_one,
                    args=(s, warm_photos[(round_ + i) % len(warm_photos)], took),
                )
                for i, s in enumerate(warm_sessions)
            ]
            for t in warmers:
                t.start()
            for t in warmers:
                t.join()
            slowest.append(max(took))
            if round_ >= 2 and max(took) < 1.0:
                break
        print(
            f"warm-up: {len(slowest)} rounds of {slots}, slowest {max(slowest):.2f} s "
            "(a worker's first lookup loads the set)"
        )
        server_pids = worker_pids(server.pid)
        db_pids = postgres_backend_pids()
        cpu_before = (cpu_seconds(server_pids), cpu_seconds(db_pids), time.process_time())
        stolen_before = stolen_seconds()

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
        clients = [threading.Thread(target=client_loop, args=(u,)) for u in users]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        wall = time.perf_counter() - started
        cpu_after = (cpu_seconds(server_pids), cpu_seconds(db_pids), time.process_time())
        stolen = stolen_seconds() - stolen_before
    finally:
        server.terminate()
        server.wait(timeout=30)

    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(round(p / 100 * (len(latencies) - 1))))]

    print(
        f"\nupload of a ~2 MP JPEG through /profile/, {args.banned:,} banned fingerprints, "
        f"{args.concurrency} concurrent users, gunicorn {workers} workers x {threads} "
        f"thread(s), {os.cpu_count()} cores:"
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
    web, db, client = (after - before for after, before in zip(cpu_after, cpu_before))
    n = len(latencies)
    print(
        f"  CPU per upload: web workers {web / n * 1000:.1f} ms, PostgreSQL {db / n * 1000:.1f} ms "
        f"(backends seen at start), this client {client / n * 1000:.1f} ms"
    )
    # Little's law: with every core busy, uploads finish at cores / CPU per upload a second,
    # so ``concurrency`` uploads in flight wait that many service times between them.
    cores = os.cpu_count() or 1
    per_upload = (web + db + client) / n * 1000
    floor = per_upload * max(1.0, args.concurrency / cores)
    print(
        f"  the CPU alone sets a mean latency of at least {floor:.0f} ms here "
        f"({args.concurrency} uploads at a time x {per_upload:.1f} ms of CPU each / "
        f"{min(cores, args.concurrency)} cores): no shape of workers goes below it"
    )
    print(f"  load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    steal = stolen / (wall * (os.cpu_count() or 1)) * 100
    print(f"  CPU taken by the host (steal): {steal:.1f}% of the run's core time")
    machine = machine_speed(photos[:24])
    print(
        f"  this machine: the image work of one upload (re-encoding and check_fingerprints, "
        f"no database) takes {machine:.1f} ms of CPU here, median of 24 photos; compare runs "
        f"on different machines by it"
    )
    print_decisions(photos[: args.requests])
    if args.json:
        print(json.dumps({
            "banned": args.banned, "pdq_list": args.pdq_list, "snapshot": args.snapshot,
            "cold_load_s": seconds,
            "concurrency": args.concurrency, "requests": n, "throughput": rate,
            "p50_ms": pct(50) * 1000, "p90_ms": pct(90) * 1000, "p99_ms": pct(99) * 1000,
            "max_ms": latencies[-1] * 1000, "web_cpu_ms": web / n * 1000,
            "db_cpu_ms": db / n * 1000, "workers": workers, "threads": threads,
            "image_work_ms": machine, "steal_pct": steal, "cpu_floor_ms": floor,
        }))  # fmt: skip


def machine_speed(photos: list[bytes]) -> float:
    """Median CPU ms of an upload's image work in this process (the re-encoding and its
    fingerprints, as ``profiles.photos.prepare_photo`` does them, without the lookups): the
    same work on every machine, so it says how fast this one is. The benchmark's own machine
    has run 1.6 times slower from one session to the next."""
    from moderation.hashing import check_fingerprints
    from profiles.photos import reencoded_photo

    took = []
    for photo in photos:
        started = time.process_time()
        check_fingerprints(io.BytesIO(reencoded_photo(io.BytesIO(photo)).content))
        took.append(time.process_time() - started)
    return statistics.median(took) * 1000


def print_decisions(photos: list[bytes]) -> None:
    """What the banned set decides for the uploaded photos (in this process, after the run):
    at this scale, how many ordinary photos would go to the review queue by chance."""
    from moderation import banned_set
    from moderation.screening import upload_fingerprints

    banned = banned_set.current()
    banned.sync()
    decisions: dict[str, int] = {}
    for data in photos:
        checked = upload_fingerprints(io.BytesIO(data))
        verdict = banned.check(
            checked.frames[0], sync=False, cuts=checked.cuts, inner=checked.inner
        )
        decisions[verdict.decision] = decisions.get(verdict.decision, 0) + 1
    print(
        "  decisions for these uploads: "
        + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items()))
        + " (a 'review' of an ordinary photo is a chance near miss: queue noise)"
    )


if __name__ == "__main__":
    main()
