"""The flag list sorted by precision, with PostgreSQL's JIT compiler on and off.

    python benchmarks/flag_list_sort.py --database-url postgres://postgres@127.0.0.1:5432/<db>
        [--repeat 3]

Times the query behind the admin's flag list (``precision.with_record``: every flag's matches,
appeals, queue decisions and precision as subqueries) sorted by precision, its first page of
100 rows, on an existing PostgreSQL database with many flags (for instance the one
``benchmarks/upload_latency.py --banned 10000000`` fills: 714,285 flags). Each run sets
``jit`` for the session itself, so it compares the server's JIT against the site's default
(``DATABASE_PG_JIT``, off) on the same data, back to back. Prints the median of ``--repeat``
runs for each, and last ``flag list sort: jit on X.XX s, jit off Y.YY s, N flags``.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        raise SystemExit("a PostgreSQL URL: the JIT is PostgreSQL's")
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection
    from django.db.models import F

    from moderation import precision
    from moderation.models import FlaggedFingerprint

    flags = FlaggedFingerprint.objects.count()
    page = precision.with_record(FlaggedFingerprint.objects.all()).order_by(
        F("record_precision").asc(nulls_last=True), "-pk"
    )
    medians = {}
    for jit in ("on", "off"):
        with connection.cursor() as cursor:
            cursor.execute(f"SET jit = {jit}")
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            rows = list(page[:100])
            times.append(time.perf_counter() - started)
        medians[jit] = statistics.median(times)
        print(f"jit {jit}: {len(rows)} rows of {flags:,} flags, median {medians[jit]:.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"flag list sort: jit on {medians['on']:.2f} s, jit off {medians['off']:.2f} s, "
          f"{flags} flags")


if __name__ == "__main__":
    main()
