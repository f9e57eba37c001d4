"""What re-encoding an upload for storage costs, by upload size: the old way and today's.

    python benchmarks/storage_decode.py [--photos DIR] [--count 6]

An upload is re-encoded before it is stored (``profiles.photos.reencoded_photo``): decoded,
shrunk to at most ``STORED_MAX_SIDE`` (2048) pixels, saved as JPEG. For each upload size
(a 2 MP photo, a 12 MP phone photo of 4032 x 3024, a 24 MP camera photo of 6000 x 4000:
corpus photos resized to that size, with a little sensor-like noise so they compress like
photos), this times, in this process (CPU time, median over ``--count`` photos):

- before: ``decoding.open_image(max_side=2048)``, which never decodes below 2048 pixels on
  the longer side and shrinks what it decoded with a Lanczos filter, then the JPEG encode;
- now: ``decoding.open_to_store`` (a reduced-scale decode kept as it is when it lands between
  ``STORED_LEAST_SIDE`` and ``STORED_MAX_SIDE``), then the same encode.

It prints the stored size each way. The last line reads
``storage decode: 2 MP A -> B ms; 12 MP C -> D ms; 24 MP E -> F ms``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"2 MP": (1633, 1225), "12 MP": (4032, 3024), "24 MP": (6000, 4000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(ROOT.parent / "shared" / "corpus" / "photos"))
    parser.add_argument("--count", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import numpy as np
    from PIL import Image

    from moderation.decoding import open_image, open_to_store
    from profiles.photos import JPEG_QUALITY, STORED_LEAST_SIDE, STORED_MAX_SIDE

    sources = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() == ".jpg")
    sources = [p for p in sources if min(Image.open(p).size) >= 1000][: args.count]
    if not sources:
        raise SystemExit(f"no photos of at least 1000 px in {args.photos}")
    rng = np.random.default_rng(0)

    def encode(img: Image.Image) -> bytes:
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
        return out.getvalue()

    def upload(path: Path, size: tuple[int, int]) -> bytes:
        with Image.open(path) as im:
            im = im.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        noisy = np.asarray(im, np.int16) + rng.integers(-6, 7, (size[1], size[0], 3))
        return encode(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))

    def timed(step, data: bytes) -> tuple[float, tuple[int, int]]:
        started = time.process_time()
        img = step(io.BytesIO(data))
        encode(img)
        return time.process_time() - started, img.size

    ways = {
        "before": lambda f: open_image(f, max_side=STORED_MAX_SIDE),
        "now": lambda f: open_to_store(
            f, max_side=STORED_MAX_SIDE, least_side=STORED_LEAST_SIDE
        ),
    }
    summary = []
    for label, size in SIZES.items():
        uploads = [upload(p, size) for p in sources]
        medians, stored = {}, {}
        for way, step in ways.items():
            runs = [timed(step, data) for data in uploads]
            medians[way] = statistics.median(t for t, _ in runs) * 1000
            stored[way] = runs[0][1]
        print(
            f"{label} ({size[0]} x {size[1]}): before {medians['before']:.1f} ms, stored "
            f"{stored['before'][0]} x {stored['before'][1]}; now {medians['now']:.1f} ms, "
            f"stored {stored['now'][0]} x {stored['now'][1]}"
        )
        summary.append(f"{label} {medians['before']:.0f} -> {medians['now']:.0f} ms")
    print("storage decode: " + "; ".join(summary))


if __name__ == "__main__":
    main()
