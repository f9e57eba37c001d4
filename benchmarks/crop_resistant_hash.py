"""Would ImageHash's ``crop_resistant_hash`` catch what the site's global hashes cannot?

    python benchmarks/crop_resistant_hash.py [PHOTOS_DIR] [--seed N] [--photos N]
                                              (default ../shared/corpus/photos, seed 0, all)

Measured before adopting it (it was not adopted). ``crop_resistant_hash`` segments an image
into bright and dark regions and hashes each (dHash by default), so a copy that keeps some
regions whole -- a 20% crop, a padded copy, a screenshot -- can still share a segment hash
with the original. This script uses ``evaluate_matching``'s split and edit suite
(``moderation.evaluation``: same seed, same edited files): it hashes every banned original and
every file (originals and all edits, banned and innocent) with ``crop_resistant_hash`` of the
prepared image (``open_image``: EXIF applied, as uploads are), then scores matching rules
"at least R segments of the upload within H bits of a segment of one banned image"
(``ImageMultiHash.matches(region_cutoff=R, hamming_cutoff=H)``; the library's default is R=1,
H=16) for recall on the hard edits and innocent files blocked. It also reports the time
``crop_resistant_hash`` takes per file: an upload would pay it while the user waits.

About 0.3-0.5 s per file on this 2-core machine: 12-20 minutes for the 72 corpus photos x 31 files.
docs/matching.md ("What it catches") quotes its output. Not part of the test run.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import imagehash  # noqa: E402
import numpy as np  # noqa: E402

from moderation import evaluation  # noqa: E402
from moderation.decoding import open_image  # noqa: E402
from moderation.management.commands._files import iter_image_paths  # noqa: E402

SHOWN = ("crop 20%", "padding 10%", "screenshot", "crop 10%", "one-sided crop 10%", "rotate 3°",
         "jpeg q60")
RULES = [(r, h) for r in (1, 2, 3) for h in (4, 8, 12, 16)]


def segment_hashes(data: bytes, times: list[float]) -> np.ndarray:
    img = open_image(io.BytesIO(data))
    started = time.perf_counter()
    multi = imagehash.crop_resistant_hash(img)
    times.append(time.perf_counter() - started)
    return np.array([int(str(h), 16) for h in multi.segment_hashes], dtype=np.uint64)


def matches(upload: np.ndarray, banned: list[np.ndarray], regions: int, bits: int) -> bool:
    """``ImageMultiHash.matches``: enough upload segments near a segment of one banned image."""
    for other in banned:
        nearest = np.bitwise_count(upload[:, None] ^ other[None, :]).min(axis=1)
        if int((nearest <= bits).sum()) >= regions:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", nargs="?", default="../shared/corpus/photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", dest="limit", type=int, default=None,
                        help="use only the first N photos (a quick look)")
    args = parser.parse_args()
    photos = evaluation.load_photos(iter_image_paths([args.photos]), [])[: args.limit]
    banned, innocent = evaluation.split(photos, seed=args.seed, banned_fraction=0.5)
    times: list[float] = []
    hashes: dict[tuple[str, str], np.ndarray] = {}
    for photo in banned + innocent:
        rng = random.Random(f"{args.seed}:{photo.path.name}")  # noqa: S311 - the evaluation's edits
        files = [(evaluation.ORIGINAL, photo.data)] + [
            (edit.name, edit.make(photo.image, rng)) for edit in evaluation.EDITS
        ]
        for name, data in files:
            hashes[(photo.path.name, name)] = segment_hashes(data, times)
        print(f"  {photo.path.name}", file=sys.stderr, flush=True)
    originals = [hashes[(p.path.name, evaluation.ORIGINAL)] for p in banned]
    segments = [len(h) for h in hashes.values()]
    print(
        f"crop_resistant_hash: {len(banned)} banned, {len(innocent)} innocent photos (seed "
        f"{args.seed}); {len(times)} files; per file {statistics.mean(times) * 1000:.0f} ms mean, "
        f"{statistics.median(times) * 1000:.0f} ms median, "
        f"{np.percentile(times, 90) * 1000:.0f} ms p90; {statistics.mean(segments):.1f} segments"
    )
    print("| segments >= R within H bits | " + " | ".join(SHOWN) + " | innocent blocked |")
    print("|---" * (len(SHOWN) + 2) + "|")
    innocent_files = [k for k in hashes if k[0] in {p.path.name for p in innocent}]
    for regions, bits in RULES:
        recall = [
            sum(matches(hashes[(p.path.name, e)], originals, regions, bits) for p in banned)
            / len(banned)
            for e in SHOWN
        ]
        blocked = sum(matches(hashes[k], originals, regions, bits) for k in innocent_files)
        print(f"| R={regions}, H={bits} | " + " | ".join(f"{r:.2f}" for r in recall)
              + f" | {blocked}/{len(innocent_files)} |")


if __name__ == "__main__":
    main()
