"""What the PDQ, MD5 and SHA-256 checks add to an upload's CPU, on the corpus photos.

    python benchmarks/signal_cost.py [PHOTOS_DIR]      # default ../shared/corpus/photos

Each photo is re-encoded as the profile form stores it (``profiles.photos.reencode_photo``,
at most 2048 px), then timed: ``check_fingerprints`` of the re-encoding (what an upload is
fingerprinted with, now including its PDQ), the PDQ alone on the same decode, and MD5 + SHA-256
of the uploaded file's bytes. Prints medians per photo; the lookup itself (the PDQ index at 1M
entries) is ``benchmarks/pdq_lookup.py``'s. Not part of the test run; numbers in
docs/exchange.md.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402

from moderation import signals  # noqa: E402
from moderation.decoding import decode_for_hashing  # noqa: E402
from moderation.hashing import check_fingerprints  # noqa: E402
from moderation.pdq import pdq_of_image  # noqa: E402
from profiles.photos import reencode_photo  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared/corpus/photos")
    rows = []
    for path in sorted(folder.glob("*.jpg")):
        data = path.read_bytes()
        stored = reencode_photo(SimpleUploadedFile(path.name, data, "image/jpeg")).read()
        decoded = decode_for_hashing(io.BytesIO(stored))
        rows.append(
            (
                best_of(lambda s=stored: check_fingerprints(io.BytesIO(s))),
                best_of(lambda d=decoded: pdq_of_image(d.image)),
                best_of(lambda b=data: signals.bytes_hashes([b])),
                len(data) / 2**20,
            )
        )
    fp, pdq_ms, digests, size = (statistics.median(c) for c in zip(*rows, strict=True))
    print(f"{len(rows)} photos, median upload {size:.1f} MiB")
    print(f"check_fingerprints (with PDQ) {fp:.1f} ms, of which PDQ {pdq_ms:.1f} ms")
    print(f"MD5 + SHA-256 of the upload's bytes {digests:.1f} ms")
    print(f"signals add per upload: {pdq_ms + digests:.1f} ms CPU + the PDQ lookup")


if __name__ == "__main__":
    main()
