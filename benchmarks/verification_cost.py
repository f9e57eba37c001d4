"""What verification adds to an upload's CPU time: the upload path with and without a candidate.

    python benchmarks/verification_cost.py PHOTOS_DIR [--photos 12] [--repeat 3]

For each photo (a 2 MP JPEG as the corpus holds), the upload decision runs as
``evaluation.look_up`` runs it (re-encode as the profile form stores, fingerprint, screen): once
against a banned set where nothing is near (no candidate: verification costs nothing), once
against a flag that carries the upload's own hashes but another picture's signal (a collision:
the upload's signal is computed and compared, and the candidate rejected). Prints the median CPU
milliseconds of each and the difference. Not part of the test run.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from moderation import evaluation, matching  # noqa: E402
from moderation.banned_index import BannedIndex, stored_variants, variant_entries  # noqa: E402
from moderation.hashing import fingerprint_variants  # noqa: E402
from moderation.screening import signal_of_file  # noqa: E402


def cpu_ms(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        call()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--photos", dest="count", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    rule = matching.MatchRule.from_settings()
    other = signal_of_file(io.BytesIO(paths[-1].read_bytes()))
    empty = BannedIndex()
    rows_none, rows_collide = [], []
    for path in paths[: args.count]:
        data = path.read_bytes()
        variants = fingerprint_variants(io.BytesIO(data))  # the flag carries the upload's hashes
        collision = BannedIndex()
        collision.build(
            variant_entries(
                (1, number, fp.signed, fp.phash_signed, 64)
                for number, fp in stored_variants(variants)
            )
        )
        rows_none.append(cpu_ms(lambda d=data: evaluation.look_up(d, empty, rule, {}), args.repeat))
        rows_collide.append(
            cpu_ms(
                lambda d=data, i=collision: evaluation.look_up(d, i, rule, {1: other}),
                args.repeat,
            )
        )
    none, collide = statistics.median(rows_none), statistics.median(rows_collide)
    print(f"{len(rows_none)} photos from {args.photos}, median CPU ms per upload decision:")
    print(f"  no candidate:               {none:6.1f}")
    print(f"  a candidate to verify:      {collide:6.1f}")
    print(f"  verification of one candidate adds {collide - none:.1f} ms")


if __name__ == "__main__":
    main()
