"""A hash list's sweep of the stored photos: M stored photos against an import of N entries.

    python benchmarks/list_sweep.py [--stored 100000] [--entries 10000] [--matches 5]
        [--database-url postgres://postgres@127.0.0.1:5432/h_list_sweep_bench]

Fills a throwaway PostgreSQL database (created if missing, migrated; its users, profiles and
stored signals are replaced) with M profiles whose photos are synthetic: a random dHash and a
random PDQ each, with MD5 / SHA-256 digests (written by ``INSERT ... SELECT`` in the
database; no files). Then imports N random PDQ lines into an enforced list through the real
import (``signal_lists.import_start`` + ``run_import``), of which ``--matches`` are stored
photos' PDQs with 8 bits flipped (within the list's 31), and runs the list sweep that import
owes, in this one process: planning (``list_sweep.plan``), then every range's task
(``list_sweep_range_task``) one after the other, as one worker would. The matched photos
have no file, so each takedown records the file as missing; the flood guard is off (its
default limit would hold the list at 25 users). Times: the import, the planning, the first
range (it loads and indexes the entries) and the whole sweep, with the rate in stored photos
per second.
The last line printed is the summary.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/h_list_sweep_bench"
PREFIX = "listsweep"


def setup_django(url: str) -> None:
    """Django on ``url`` (the database is created if missing), migrated, tasks queued only."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    folder = Path(tempfile.mkdtemp(prefix="list-sweep-bench-"))
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_MEDIA_ROOT"] = str(folder / "media")
    os.environ["MODERATION_QUARANTINE_ROOT"] = str(folder / "quarantine")
    os.environ["MODERATION_TASKS_BACKEND"] = "database"
    os.environ["MODERATION_FLOOD_MAX_USERS"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(stored: int) -> float:
    """``stored`` profiles and their signals rows, written in the database; seconds taken."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from moderation import registry, stored_hashes
    from moderation.models import HashList, StoredSignal, Sweep
    from profiles.models import Profile

    started = time.perf_counter()
    users, profiles = get_user_model()._meta.db_table, Profile._meta.db_table
    signals_table = StoredSignal._meta.db_table
    key = registry.target_for(Profile).key
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {profiles}, {users}, {signals_table} RESTART IDENTITY CASCADE")
    Sweep.objects.all().delete()
    HashList.objects.filter(name__startswith=PREFIX).delete()
    target_id = stored_hashes.marker_id(key)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {users} (id, username, password, is_superuser, is_staff, "  # noqa: S608
            "is_active, first_name, last_name, email, date_joined) "
            f"SELECT i, '{PREFIX}' || i, '!', false, false, true, '', '', '', now() "
            "FROM generate_series(1, %s) i",
            [stored],
        )
        cursor.execute(
            f"INSERT INTO {profiles} (id, user_id, display_name, photo, photo_dhash, "  # noqa: S608
            "photo_phash, photo_pipeline_version, photo_probes, created_at, updated_at) "
            "SELECT i, i, '', 'photos/' || i || '.jpg', "
            "('x' || substr(md5(i::text), 1, 16))::bit(64)::bigint, NULL, 8, '', now(), now() "
            "FROM generate_series(1, %s) i",
            [stored],
        )
        cursor.execute(
            f"INSERT INTO {signals_table} (target_id, object_pk, dhash, pdq, pdq_quality, "  # noqa: S608
            "md5, sha256, updated_at) "
            "SELECT %s, p.id, p.photo_dhash, md5('a' || p.id) || md5('b' || p.id), 100, "
            "md5('c' || p.id), md5('d' || p.id) || md5('e' || p.id), now() "
            f"FROM {profiles} p",
            [target_id],
        )
        for table in (users, profiles, signals_table):
            cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def flipped(hex_hash: str, bits: int, rng: random.Random) -> str:
    value = int(hex_hash, 16)
    for bit in rng.sample(range(256), bits):
        value ^= 1 << bit
    return f"{value:064x}"


def measure(stored: int, entries: int, matches: int) -> dict:
    from django.db import connection

    from moderation import list_sweep, signal_lists
    from moderation.models import HashList, StoredSignal, Sweep

    rng = random.Random(7)
    figures = {"stored": stored, "entries": entries, "fill_s": fill(stored)}
    matched = list(
        StoredSignal.objects.order_by("?").values_list("pdq", flat=True)[:matches]
    )
    lines = [flipped(h, 8, rng) for h in matched]
    lines += [f"{rng.getrandbits(256):064x}" for _ in range(entries - len(lines))]
    hash_list = HashList.objects.create(name=f"{PREFIX}-partner")

    started = time.perf_counter()
    imp = signal_lists.import_start(
        hash_list=hash_list,
        file=io.BytesIO("\n".join(lines).encode()),
        file_name="bench.txt",
        fmt="text",
        source="bench",
    )
    signal_lists.run_import(imp)
    figures["import_s"] = time.perf_counter() - started

    sweep = Sweep.objects.get(hash_list=hash_list)
    started = time.perf_counter()
    ranges = list_sweep.plan(sweep)
    figures["plan_s"] = time.perf_counter() - started
    figures["ranges"] = len(ranges)
    started = time.perf_counter()
    for i, work in enumerate(ranges):
        list_sweep.list_sweep_range_task.call(work.pk)
        if i == 0:
            figures["first_range_s"] = time.perf_counter() - started
    figures["sweep_s"] = time.perf_counter() - started
    sweep.refresh_from_db()
    figures.update(state=sweep.state, checked=sweep.checked, taken_down=sweep.taken_down)
    figures["rate"] = sweep.checked / figures["sweep_s"] if figures["sweep_s"] else 0.0
    connection.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--matches", type=int, default=5)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    setup_django(args.database_url)
    f = measure(args.stored, args.entries, args.matches)
    print(f"filled {f['stored']:,} stored photos in {f['fill_s']:.1f} s")
    print(f"imported {f['entries']:,} PDQ entries in {f['import_s']:.2f} s")
    print(f"planned {f['ranges']} ranges in {f['plan_s']:.2f} s")
    print(f"first range (loads and indexes the entries) {f['first_range_s']:.2f} s")
    print(
        f"summary: list sweep of {f['stored']:,} stored photos against {f['entries']:,} new "
        f"entries: {f['sweep_s']:.1f} s in one worker ({f['rate']:,.0f} photos/s), "
        f"{f['checked']:,} checked, {f['taken_down']} taken down "
        f"(of {args.matches} planted), state {f['state']}"
    )


if __name__ == "__main__":
    main()
