"""Import benchmark: 1M PDQ lines from a text file into a hash list, as ``import_hashes`` runs.

    python benchmarks/import_hashes.py --database-url postgres://postgres@127.0.0.1:5432/bench
    python benchmarks/import_hashes.py --lines 100000          # SQLite in a temporary folder

The PostgreSQL database must exist (it is migrated; its hash lists are emptied first). Writes
a file of N random PDQ hashes (one in ten with tags), then times ``signal_lists.run_import``:
reading the file into staging rows in committed steps (with the progress it reports) and the
one-transaction apply; then the first lookup of a process (loading N entries into the PDQ index)
and a lookup after it; then a second import of the same file with 1% of its lines dropped (they
are retracted). The last line is the summary:
``imported N PDQ lines in T s (read R s, apply A s)``.
Not part of the test run; its numbers are in docs/exchange.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(url: str, folder: Path) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_MEDIA_ROOT"] = str(folder / "media")
    os.environ["MODERATION_QUARANTINE_ROOT"] = str(folder / "quarantine")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def write_file(path: Path, values: list[str], keep: np.ndarray | None = None) -> None:
    with path.open("w") as out:
        for i, value in enumerate(values):
            if keep is not None and not keep[i]:
                continue
            out.write(f"{value} partner-x verified\n" if i % 10 == 0 else f"{value}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="import_hashes_"))
    setup_django(args.database_url or f"sqlite:///{folder / 'db.sqlite3'}", folder)

    from django.db import connection

    from moderation import signal_lists, signal_set, signals
    from moderation.models import (
        HashList,
        SignalChange,
        SignalEntry,
        SignalImport,
        SignalImportRow,
    )

    # A throwaway database: empty the tables of earlier runs without loading their rows.
    tables = [m._meta.db_table for m in (SignalChange, SignalImportRow, SignalEntry, SignalImport)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = ", ".join(connection.ops.quote_name(t) for t in tables)
            cursor.execute(f"TRUNCATE {names} CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")  # noqa: S608
    hash_list, _ = HashList.objects.get_or_create(name="benchmark")

    rng = np.random.default_rng(15)
    raw = rng.integers(0, 256, (args.lines, 32), dtype=np.uint8)
    values = [row.tobytes().hex() for row in raw]
    path = folder / "pdq.txt"
    write_file(path, values)
    print(f"{connection.vendor}: {args.lines} lines, {path.stat().st_size / 2**20:.0f} MiB")

    marks = {}

    def progress(imp: SignalImport) -> None:
        now = time.perf_counter()
        if imp.state != SignalImport.State.READING and "read" not in marks:
            marks["read"] = now
        print(
            f"  {imp.lines_done} lines read ({imp.bytes_done / imp.total_bytes:.0%}), "
            f"{imp.get_state_display()}, {now - marks['start']:.1f} s"
        )

    marks["start"] = time.perf_counter()
    with path.open("rb") as fh:
        imp = signal_lists.import_start(
            hash_list=hash_list, file=fh, file_name="pdq.txt", fmt="text", source="bench"
        )
    imp = signal_lists.run_import(imp, progress=progress)
    end = time.perf_counter()
    total, read = end - marks["start"], marks["read"] - marks["start"]
    print(f"first import: {imp.added} added, {imp.malformed} malformed, {total:.1f} s")

    signal_set.reset()
    start = time.perf_counter()
    found = signals.lookup("pdq", values[123])
    cold = time.perf_counter() - start
    start = time.perf_counter()
    signals.lookup("pdq", values[456])
    warm = time.perf_counter() - start
    print(
        f"first lookup (loads the index) {cold:.1f} s, next {warm * 1000:.1f} ms, "
        f"found {len(found)}"
    )

    keep = rng.random(args.lines) >= 0.01
    write_file(path, values, keep)
    marks.clear()
    marks["start"] = time.perf_counter()
    with path.open("rb") as fh:
        again = signal_lists.import_start(
            hash_list=hash_list, file=fh, file_name="pdq.txt", fmt="text", source="bench"
        )
    again = signal_lists.run_import(again, progress=progress)
    second = time.perf_counter() - marks["start"]
    start = time.perf_counter()
    signals.lookup("pdq", values[789])
    replay = time.perf_counter() - start
    print(
        f"second import (1% dropped): {again.added} added, {again.unchanged} unchanged, "
        f"{again.retracted} retracted in {second:.1f} s; next lookup (replays it) "
        f"{replay:.1f} s"
    )
    print(
        f"imported {args.lines} PDQ lines in {total:.1f} s (read {read:.1f} s, "
        f"apply {total - read:.1f} s)"
    )


if __name__ == "__main__":
    main()
