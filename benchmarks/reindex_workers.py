"""Reindex throughput (stored photos re-fingerprinted per second) with 1 and 2 real task workers.

    python benchmarks/reindex_workers.py [--stored 3000] [--workers 1 2] [--batch-size 50]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_reindex]

Fills a PostgreSQL database (created if missing, migrated) with ``--stored`` profiles whose
photos are real small JPEG files on disk (320×240, 16 distinct pictures) and whose stored hashes
are stale, once; then for each worker count starts that many ``manage.py run_worker``
processes, waits until they poll, runs ``manage.py reindex --background --no-sweep`` (ranges of
``stored / (8 × workers)`` rows, at most ``MODERATION_REINDEX_RANGE_SIZE``) and times the run
from the enqueue to its close. Prints rows/s per worker count, the ratio of the last to the
first, and a final summary line. ``measure_reindex(stored, workers)`` is the same as a function
(it returns a dict). Not part of the test run; docs/operations.md quotes its numbers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_reindex"
PICTURES = 16
_folder: Path | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    return parser.parse_args()


def _create_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup(url: str = DEFAULT_URL) -> Path:
    """Django on ``url`` (created and migrated) with media in a temporary folder; once."""
    global _folder
    if _folder is not None:
        return _folder
    _create_database(url)
    _folder = Path(tempfile.mkdtemp(prefix="reindex-bench-"))
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_MEDIA_ROOT=str(_folder / "media"),
        MODERATION_QUARANTINE_ROOT=str(_folder / "quarantine"),
        MODERATION_TASKS_BACKEND="database",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return _folder


def fill(stored: int) -> None:
    """Exactly ``stored`` profiles with a photo file on disk and a stale stored hash."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from profiles.models import Profile
    from tests import images

    User = get_user_model()
    Profile.objects.all().delete()
    User.objects.filter(username__startswith="bench").delete()
    storage = Profile.photo.field.storage
    pictures = [
        images.encode(images.photo(900 + i, (320, 240)), "JPEG", quality=85)
        for i in range(PICTURES)
    ]
    users = User.objects.bulk_create(
        User(username=f"bench{i}", password="!") for i in range(stored)
    )
    Profile.objects.bulk_create(
        Profile(
            user=user,
            photo=storage.save(f"photos/bench{i}.jpg", ContentFile(pictures[i % PICTURES])),
            photo_dhash=i + 1,
            photo_pipeline_version=0,
        )
        for i, user in enumerate(users)
    )


def _start_workers(count: int, folder: Path) -> list[tuple[subprocess.Popen, Path]]:
    procs = []
    for n in range(count):
        log = folder / f"worker{n}.log"
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_worker"]
            + ["--no-startup-delay", "--interval=0.05", f"--worker-id=bench{n}", "-v2"],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
    deadline = time.monotonic() + 60
    for proc, log in procs:
        while b"Starting worker" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log.read_text()}")
            time.sleep(0.05)
    return procs


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(procs) -> None:
    for proc, _ in procs:
        proc.terminate()
    for proc, _ in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def measure_reindex(
    stored: int, workers: int, *, batch_size: int = 50, database_url: str = DEFAULT_URL
) -> dict:
    """Reindex ``stored`` photos (filled if the database holds another number) with
    ``workers`` real ``run_worker`` processes; rows/s from the enqueue to the run's close."""
    folder = setup(database_url)
    from django.conf import settings
    from django.core.management import call_command
    from django.db.models import Max, Min
    from django_tasks_db.models import DBTaskResult

    from moderation.models import ReindexRun
    from moderation.reindex import reindex_range_task
    from profiles.models import Profile

    first = Profile.objects.exclude(photo="").first()
    if (
        Profile.objects.exclude(photo="").count() != stored
        or not first.photo.storage.exists(first.photo.name)  # an earlier run's media folder
    ):
        fill(stored)
    else:
        Profile.objects.update(photo_dhash=1, photo_pipeline_version=0)  # stale again
    settings.MODERATION_REINDEX_RANGE_SIZE = max(1, min(5000, stored // (8 * workers)))
    procs = _start_workers(workers, folder)
    try:
        idle = [_cpu_seconds(proc.pid) for proc, _ in procs]  # start-up, not reindex
        started = time.monotonic()
        call_command(
            "reindex", "--background", "--restart", "--no-sweep", f"--batch-size={batch_size}"
        )
        run = ReindexRun.objects.get(finished_at__isnull=True)
        while True:
            run.refresh_from_db()
            if run.finished_at is not None:
                break
            if any(proc.poll() is not None for proc, _ in procs):
                raise RuntimeError("a worker died: " + "".join(log.read_text() for _, log in procs))
            time.sleep(0.05)
        seconds = time.monotonic() - started
        cpu = [_cpu_seconds(proc.pid) - before for (proc, _), before in zip(procs, idle)]
    finally:
        _stop(procs)
    range_ids = set(run.ranges.values_list("pk", flat=True))
    per_worker: dict[str, int] = {}
    for result in DBTaskResult.objects.filter(task_path=reindex_range_task.module_path):
        if result.args_kwargs["args"][0] in range_ids and result.return_value:
            worker = result.worker_ids[-1]
            per_worker[worker] = per_worker.get(worker, 0) + result.return_value["processed"]
    span = run.ranges.aggregate(first=Min("started_at"), last=Max("finished_at"))
    processed = run.counts["processed"]
    if processed != stored or run.counts["changed"] != stored:
        raise RuntimeError(f"expected every row once, got {run.counts}")
    return {
        "stored": stored,
        "workers": workers,
        "ranges": run.ranges.count(),
        "seconds": round(seconds, 2),
        "rows_per_s": round(processed / seconds, 1),
        "ranges_seconds": round((span["last"] - span["first"]).total_seconds(), 2),
        "rows_per_worker": sorted(per_worker.values()),
        "worker_cpu_s": [round(c, 1) for c in cpu],
        "cpu_ms_per_row": round(1000 * sum(cpu) / processed, 1),
        "load_average": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    args = parse_args()
    results = []
    for workers in args.workers:
        result = measure_reindex(
            args.stored, workers, batch_size=args.batch_size, database_url=args.database_url
        )
        results.append(result)
        print(
            f"{workers} worker(s): {result['stored']} photos in {result['seconds']:.2f} s "
            f"({result['ranges']} ranges), {result['rows_per_s']:.1f} rows/s; rows per worker "
            f"{result['rows_per_worker']}, worker CPU {result['worker_cpu_s']} s "
            f"({result['cpu_ms_per_row']} ms/row), load average {result['load_average']}"
        )
    ratio = results[-1]["rows_per_s"] / results[0]["rows_per_s"]
    per = "; ".join(f"{r['workers']} workers {r['rows_per_s']:.1f} rows/s" for r in results)
    print(f"reindex_workers: {args.stored} stored; {per}; ratio {ratio:.2f}×")


if __name__ == "__main__":
    main()
