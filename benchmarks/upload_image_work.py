"""Where an upload's image work goes, step by step, on ~2 MP versions of the corpus photos.

    python benchmarks/upload_image_work.py [PHOTOS_DIR] [--photos N] [--repeat R]
                                           (default ../shared/corpus/photos, 24 photos, 3 runs)

Each photo is drawn as the upload benchmark draws its uploads (``upload_latency.make_photos``:
a ~2 MP JPEG) and put through the steps ``profiles.photos.prepare_photo`` runs, each timed on
its own in this process (CPU time, ``time.process_time``): the upload's decode and the encode
of what will be stored (``reencoded_photo``), the MD5 and SHA-256 of the upload's bytes, the
decode of the re-encoding for hashing, the whole picture's dHash and pHash, its PDQ, the two
upload cuts, the frame search, and ``check_fingerprints`` as a whole. It also times the whole
picture and the cuts hashed with the first pass shared (``hashing._RowPasses``, as
``check_fingerprints`` does) and without, on the same decode, interleaved.

Prints the median of each step in ms and, last, one line:
``image work: reencode R ms, check_fingerprints C ms, whole + cuts shared S ms (separate T ms)``.
No database and no lookups: those are ``benchmarks/upload_latency.py``'s. Not part of the test
run; its numbers are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from upload_latency import make_photos  # noqa: E402

from moderation import decoding, hashing  # noqa: E402
from moderation.pdq import pdq_of_image  # noqa: E402
from moderation.stored_hashes import file_digests  # noqa: E402
from profiles.photos import JPEG_QUALITY, STORED_LEAST_SIDE, STORED_MAX_SIDE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos_dir", nargs="?", default=str(ROOT.parent / "shared/corpus/photos"))
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.photos_dir)
    if not folder.is_dir():
        raise SystemExit(f"no photo folder at {folder}")
    uploads = make_photos(folder, args.photos)
    took: dict[str, list[float]] = {}

    def timed(step: str, work):
        started = time.process_time()
        result = work()
        took.setdefault(step, []).append((time.process_time() - started) * 1000)
        return result

    for _ in range(args.repeat):
        for data in uploads:
            time_one_upload(data, timed)

    took["reencode"] = [a + b for a, b in zip(took["upload's decode"], took["encode"])]
    median = {step: statistics.median(values) for step, values in took.items()}
    print(f"{len(uploads)} uploads of ~2 MP, {args.repeat} runs each; median CPU ms per upload:")
    for step, value in median.items():
        print(f"  {step:44s} {value:6.2f}")
    print(
        f"image work: reencode {median['reencode']:.2f} ms, check_fingerprints "
        f"{median['check_fingerprints']:.2f} ms, whole + cuts shared "
        f"{median['whole + cuts, shared first pass']:.2f} ms "
        f"(separate {median['whole + cuts, separate']:.2f} ms)"
    )


def time_one_upload(data: bytes, timed) -> None:
    """Each step of one upload's image work, timed with ``timed(step, work)``."""
    picture = timed(
        "upload's decode",
        lambda: decoding.open_to_store(
            io.BytesIO(data), max_side=STORED_MAX_SIDE, least_side=STORED_LEAST_SIDE
        ),
    )
    picture = picture if picture.mode == "RGB" else picture.convert("RGB")
    out = io.BytesIO()
    timed("encode", lambda: picture.save(out, format="JPEG", quality=JPEG_QUALITY))
    content = out.getvalue()
    timed("MD5 and SHA-256", lambda: file_digests(io.BytesIO(data)))
    decoded = timed("decode for hashing", lambda: decoding.decode_for_hashing(io.BytesIO(content)))
    timed("whole dHash and pHash", lambda: hashing._fingerprint_decoded(decoded))
    timed("PDQ", lambda: pdq_of_image(decoded.image))
    for number in hashing.UPLOAD_CUTS:
        variant = hashing.VARIANTS[number]
        timed(f"cut: {variant.label}", partial(hashing._fingerprint_decoded, decoded, variant))
    timed("frame search", lambda: hashing._picture_in_frame(decoded, hashing._grey(decoded.image)))
    timed("whole + cuts, separate", lambda: _whole_and_cuts(decoded, None))
    timed(
        "whole + cuts, shared first pass",
        lambda: _whole_and_cuts(decoded, hashing._RowPasses(decoded)),
    )
    timed("check_fingerprints", lambda: hashing.check_fingerprints(io.BytesIO(content)))


def _whole_and_cuts(decoded, passes) -> None:
    hashing._fingerprint_decoded(decoded, passes=passes)
    for number in hashing.UPLOAD_CUTS:
        hashing._fingerprint_decoded(decoded, hashing.VARIANTS[number], passes)


if __name__ == "__main__":
    main()
