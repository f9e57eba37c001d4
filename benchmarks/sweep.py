"""The sweep after one flag, with 1M and 10M stored photos, on PostgreSQL.

    python benchmarks/sweep.py [--stored 1000000 10000000] [--full-pass-max 1000000]
        [--database-url postgres://postgres@127.0.0.1:5432/h_stored_bench] [--reuse]

Fills a throwaway PostgreSQL database (created if missing, migrated; its profiles are replaced)
with N profiles whose photos are synthetic hashes (clustered dHashes shaped like real ones,
``benchmarks/lookup.py``; uniform pHashes; two cuts each and a framed picture for 1 in 50),
written with COPY, then indexes them with the backfill (``stored_backfill.backfill``, timed;
above ``--backfill-max`` the same rows are written by COPY instead, to save time),
adds 5 real copies of one drawn photo (stored through the upload path) and flags that photo.
The tasks backend is the database one, so nothing runs on its own. Then it times:

- the full pass (today's sweep: every stored photo screened in Python), up to
  ``--full-pass-max`` stored photos; above, it is extrapolated from the per-photo rate, and the
  summary says so;
- the worker's one-time cold load of the stored index (``stored_index.StoredIndex.sync``);
- the sweep after the flag through the index (``sweeping.sweep_banned_matches``; its sync,
  one lookup per variant, the screening of the photos found and their takedowns), median of 3.

Each sweep runs in a transaction rolled back afterwards, so every run sees the same data.
Importable: ``measure_sweep(stored)`` returns the figures as a dict. The last line printed is
the summary. Not part of the test run; the numbers in docs/performance.md come from here.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/h_stored_bench"
COPIES = 5
PREFIX = "sweepbench"
_EPOCH_2000 = 946_684_800  # PostgreSQL's binary timestamps count microseconds from 2000-01-01


def setup_django(url: str) -> None:
    """Django on ``url`` (the database is created if missing), migrated, tasks queued only."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    folder = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_MEDIA_ROOT"] = str(folder / "media")
    os.environ["MODERATION_QUARANTINE_ROOT"] = str(folder / "quarantine")
    os.environ["MODERATION_TASKS_BACKEND"] = "database"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class _Undo(Exception):
    pass


def _fields(*columns: tuple[str, str | None]) -> list[tuple[str, str]]:
    """A binary COPY record: the field count, then each field's length and value (None: an
    empty value, its length only)."""
    out = [("n", ">i2")]
    for name, kind in columns:
        out.append((f"{name}_len", ">i4"))
        if kind is not None:
            out.append((name, kind))
    return out


def _copy_binary(table: str, columns: list[str], records: np.ndarray) -> None:
    from django.db import connection

    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT binary)"
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        copy.write(header)
        step = 200_000
        for start in range(0, len(records), step):
            copy.write(records[start : start + step].tobytes())
        copy.write((-1).to_bytes(2, "big", signed=True))


def fill(n: int, rng: np.random.Generator, *, backfill: bool = True) -> dict:
    """``n`` profiles of synthetic photos (users and profiles by COPY), their index rows by
    the backfill (else by COPY from the same arrays); returns the timings."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from benchmarks.lookup import clustered_hashes
    from moderation import registry, stored_backfill
    from moderation.hashing import PIPELINE_VERSION
    from moderation.models import StoredHash, StoredHashTarget
    from moderation.variants import UPLOAD_CUTS
    from profiles.models import Profile

    user_table, profile_table = get_user_model()._meta.db_table, Profile._meta.db_table
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {profile_table}, {user_table}, {StoredHash._meta.db_table} "
            "RESTART IDENTITY CASCADE"
        )
        cursor.execute(
            f"INSERT INTO {user_table} (id, username, password, is_superuser, is_staff, "
            "is_active, first_name, last_name, email, date_joined) "
            f"SELECT i, '{PREFIX}' || i, '!', false, false, true, '', '', '', now() "
            "FROM generate_series(1, %s) i",
            [n],
        )
    StoredHashTarget.objects.all().delete()
    hashes = [clustered_hashes(n, rng) for _ in range(1 + len(UPLOAD_CUTS) + 1)]
    phashes = rng.integers(0, 2**64, size=(len(hashes), n), dtype=np.uint64)
    framed = rng.random(n) < 0.02
    now = int((time.time() - _EPOCH_2000) * 1e6)
    for with_frame in (False, True):
        rows = np.flatnonzero(framed == with_frame)
        probes = [(number, 1 + i) for i, number in enumerate(UPLOAD_CUTS)]
        if with_frame:
            probes.append((-1, len(UPLOAD_CUTS) + 1))
        probe_bytes = 24 * len(probes)
        names = np.char.add(np.char.zfill((rows + 1).astype("U10"), 10), ".jpg")
        names = np.char.add("photos/sb", names).astype("S")
        width = names.dtype.itemsize
        columns = (
            ("id", ">i8"), ("user_id", ">i4"), ("display_name", None), ("photo", f"S{width}"),
            ("photo_dhash", ">u8"), ("photo_phash", ">u8"), ("version", ">i2"),
            ("photo_probes", f"S{probe_bytes}"), ("created_at", ">i8"), ("updated_at", ">i8"),
        )  # fmt: skip
        records = np.zeros(len(rows), np.dtype(_fields(*columns)))
        records["n"] = len(columns)
        for name, kind in columns:
            records[f"{name}_len"] = 0 if kind is None else np.dtype(kind).itemsize
        records["id"] = records["user_id"] = rows + 1
        records["photo"] = names
        records["photo_dhash"], records["photo_phash"] = hashes[0][rows], phashes[0][rows]
        records["version"] = PIPELINE_VERSION
        packed = np.zeros((len(rows), len(probes), 3), "<i8")
        for j, (number, which) in enumerate(probes):
            packed[:, j, 0] = number
            packed[:, j, 1] = hashes[which][rows].view(np.int64)
            packed[:, j, 2] = phashes[which][rows].view(np.int64)
        records["photo_probes"] = packed.reshape(len(rows), -1).view(f"S{probe_bytes}")[:, 0]
        records["created_at"] = records["updated_at"] = now
        _copy_binary(
            profile_table,
            ["id", "user_id", "display_name", "photo", "photo_dhash", "photo_phash",
             "photo_pipeline_version", "photo_probes", "created_at", "updated_at"],
            records,
        )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {profile_table}")
        for table in (user_table, profile_table):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [n]
            )
    filled = time.perf_counter() - started
    started = time.perf_counter()
    target = registry.target_for(Profile)
    if backfill:
        stored_backfill.backfill(target, batch_size=50_000)
    else:  # the same rows the backfill would write, by COPY from the arrays
        marker = StoredHashTarget.objects.create(key=target.key, complete=True).pk
        kinds = [(-2, 0, np.ones(n, bool))]
        kinds += [(number, 1 + i, np.ones(n, bool)) for i, number in enumerate(UPLOAD_CUTS)]
        kinds.append((-1, len(UPLOAD_CUTS) + 1, framed))
        columns = (
            ("target_id", ">i8"), ("object_pk", ">i8"), ("probe", ">i2"), ("dhash", ">u8"),
            ("phash", ">u8"), ("created_at", ">i8"),
        )  # fmt: skip
        for probe, which, present in kinds:
            rows = np.flatnonzero(present)
            records = np.zeros(len(rows), np.dtype(_fields(*columns)))
            records["n"] = len(columns)
            for name, kind in columns:
                records[f"{name}_len"] = np.dtype(kind).itemsize
            records["target_id"], records["object_pk"], records["probe"] = marker, rows + 1, probe
            records["dhash"], records["phash"] = hashes[which][rows], phashes[which][rows]
            records["created_at"] = now
            _copy_binary(StoredHash._meta.db_table, [c for c, _ in columns], records)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {StoredHash._meta.db_table}")
    key = "backfill_s" if backfill else "rows_copied_s"
    return {"fill_s": filled, key: time.perf_counter() - started}


def add_copies_and_flag(rng: np.random.Generator):
    """5 real copies of one drawn photo, stored as uploads are; then that photo flagged."""
    from django.contrib.auth import get_user_model

    from moderation import flagging
    from moderation.models import FlaggedFingerprint
    from profiles.models import Profile
    from profiles.photos import profile_set_photo
    from tests import images

    scene = images.photo(4242, (800, 600))
    edits = [
        images.recompressed(scene, 80),
        images.resized(scene, 0.5),
        images.captioned(scene),
        images.recompressed(images.resized(scene, 0.7), 60),
        images.brightened(scene, 1.1),
    ]
    user_model = get_user_model()
    for i, img in enumerate(edits):
        user = user_model.objects.create_user(username=f"{PREFIX}copy{i}", password="!")
        profile = Profile.objects.create(user=user)
        profile_set_photo(profile=profile, upload=images.upload(img, f"copy{i}.jpg"))
    return flagging.flag_image(
        file=images.upload(scene, "scene.png", "PNG"),
        reason="benchmark",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
    ).fingerprint


def _reusable(stored: int):
    """The flag of an earlier fill of exactly ``stored`` synthetic photos (and its copies), or
    None: the sweeps are rolled back, so a filled database can be timed again."""
    from moderation.models import FlaggedFingerprint
    from profiles.models import Profile

    flagged = FlaggedFingerprint.objects.filter(reason="benchmark").order_by("-pk").first()
    if flagged is None or Profile.objects.count() != stored + COPIES:
        return None
    return flagged


def timed_sweep(flag_id: int, *, full_pass: bool) -> tuple[float, object]:
    """One sweep after the flag, rolled back afterwards; (seconds, SweepResult)."""
    from django.db import transaction

    from moderation import sweeping
    from moderation.models import StoredHashTarget

    out = {}
    try:
        with transaction.atomic():
            if full_pass:
                StoredHashTarget.objects.update(complete=False)
            started = time.perf_counter()
            out["result"] = sweeping.sweep_banned_matches(fingerprint_ids=[flag_id])
            out["seconds"] = time.perf_counter() - started
            raise _Undo
    except _Undo:
        pass
    return out["seconds"], out["result"]


def timed_lookup(flag_id: int) -> dict:
    """The part of the sweep that grows with the stored photos, on its own: the sync with
    nothing new, then one lookup per variant of the flag (median of 5)."""
    from moderation import stored_index
    from moderation.banned_index import variant_entries
    from moderation.banned_set import active_variant_rows
    from moderation.matching import MatchRule
    from moderation.models import StoredHashTarget

    index, rule = stored_index.current(), MatchRule.from_settings()
    variants = stored_index.variants_of(variant_entries(active_variant_rows([flag_id])))
    marker = StoredHashTarget.objects.get().pk
    syncs, lookups = [], []
    for _ in range(5):
        started = time.perf_counter()
        index.sync()
        syncs.append(time.perf_counter() - started)
        started = time.perf_counter()
        found = index.near(marker, variants, rule)
        lookups.append(time.perf_counter() - started)
    return {
        "sync_ms": statistics.median(syncs) * 1e3,
        "lookup_ms": statistics.median(lookups) * 1e3,
        "variants": len(variants),
        "found": len(found),
    }


def _rss_mb() -> float:
    """This process's resident memory now (Linux), else its peak so far."""
    try:
        with open("/proc/self/status") as status:
            line = next(x for x in status if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_sweep(
    stored: int,
    *,
    full_pass_max: int = 1_000_000,
    backfill_max: int = 1_000_000,
    url: str = DEFAULT_URL,
    seed: int = 0,
    reuse: bool = False,
) -> dict:
    """Fill ``stored`` synthetic photos and time the sweep after one flag both ways;
    ``reuse``: time it on what an earlier run filled, when it holds exactly ``stored``."""
    import logging

    if "DJANGO_SETTINGS_MODULE" not in os.environ or os.environ.get("DATABASE_URL") != url:
        setup_django(url)
    from moderation import stored_index
    logging.getLogger("moderation.stored_index").setLevel(logging.ERROR)  # the fallback's note
    rng = np.random.default_rng(seed)
    flagged = _reusable(stored) if reuse else None
    if flagged is None:
        figures: dict = {"stored": stored, **fill(stored, rng, backfill=stored <= backfill_max)}
        flagged = add_copies_and_flag(rng)
    else:
        figures = {"stored": stored, "fill_s": 0.0, "rows_copied_s": 0.0, "reused": True}

    if stored <= full_pass_max:
        seconds, result = timed_sweep(flagged.pk, full_pass=True)
        figures.update(
            full_pass_s=seconds, full_pass_taken_down=len(result.taken_down),
            full_pass_checked=result.checked, full_pass_extrapolated=False,
        )  # fmt: skip
    stored_index.reset()
    rss_before = _rss_mb()
    started = time.perf_counter()
    rows = stored_index.current().sync()
    figures.update(
        cold_load_s=time.perf_counter() - started,
        index_rows=rows,
        index_mb=stored_index.current().nbytes() / 2**20,
        rss_growth_mb=_rss_mb() - rss_before,
    )
    figures.update(timed_lookup(flagged.pk))
    runs = [timed_sweep(flagged.pk, full_pass=False) for _ in range(3)]
    figures.update(
        sweep_s=statistics.median(seconds for seconds, _ in runs),
        sweep_max_s=max(seconds for seconds, _ in runs),
        sweep_checked=runs[0][1].checked,
        sweep_taken_down=len(runs[0][1].taken_down),
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--full-pass-max", type=int, default=1_000_000)
    parser.add_argument("--backfill-max", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument(
        "--reuse", action="store_true", help="time again what an earlier run filled, if it fits"
    )
    args = parser.parse_args()
    setup_django(args.database_url)
    results, rate = [], None
    for n in args.stored:
        figures = measure_sweep(
            n,
            full_pass_max=args.full_pass_max,
            backfill_max=args.backfill_max,
            url=args.database_url,
            reuse=args.reuse,
        )
        if "full_pass_s" in figures:
            rate = figures["full_pass_s"] / figures["full_pass_checked"]
        elif rate is not None:
            figures.update(full_pass_s=rate * (n + COPIES), full_pass_extrapolated=True)
        results.append(figures)
        print(
            f"{n:>11,} stored: fill {figures['fill_s']:.1f} s, "
            + (f"backfill {figures['backfill_s']:.1f} s" if "backfill_s" in figures
               else f"rows by COPY {figures['rows_copied_s']:.1f} s")
            + "; full pass "
            + (
                f"{figures['full_pass_s']:.1f} s"
                + (" (extrapolated)" if figures.get("full_pass_extrapolated") else
                   f", {figures['full_pass_taken_down']} taken down")
                if "full_pass_s" in figures else "not run"
            )
            + f"; cold load {figures['cold_load_s']:.1f} s ({figures['index_rows']:,} rows, "
            f"{figures['index_mb']:.0f} MiB, RSS +{figures['rss_growth_mb']:.0f} MiB); "
            f"sync {figures['sync_ms']:.1f} ms, {figures['variants']} lookups "
            f"{figures['lookup_ms']:.1f} ms ({figures['found']} found); "
            f"sweep {figures['sweep_s'] * 1e3:.0f} ms (max {figures['sweep_max_s'] * 1e3:.0f}), "
            f"{figures['sweep_checked']} screened, {figures['sweep_taken_down']} taken down",
            flush=True,
        )  # fmt: skip
    parts = []
    for f in results:
        full = f.get("full_pass_s")
        full_text = "n/a" if full is None else (
            f"{full:.1f} s" + (" extrapolated" if f.get("full_pass_extrapolated") else "")
        )  # fmt: skip
        parts.append(
            f"{f['stored']:,} stored: sweep {f['sweep_s']:.3f} s (lookups "
            f"{f['lookup_ms']:.0f} ms; full pass {full_text}), cold load {f['cold_load_s']:.1f} s"
        )
    print("sweep: " + "; ".join(parts))


if __name__ == "__main__":
    main()
