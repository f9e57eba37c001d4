"""How far the site's PDQ may be reduced before hashing: drift, catches and time per size.

    python benchmarks/pdq_size.py [--photos DIR] [--sides 1024 768 640 512]

A partner hashes the original file at full size (python-threatexchange's ``pdq_from_file``).
The site hashes what it stores: the upload re-encoded (``profiles.photos.reencode_photo``),
decoded as the fingerprint decodes it (``decoding.decode_for_hashing``), reduced so that its
longer side is at most ``pdq.MAX_SIDE`` (an integer box reduction), then PDQ. For each
candidate ``MAX_SIDE`` this prints, over the corpus:

- drift: bits between the partner's hash of the original and the site's hash of the same
  photo uploaded as a ~2 MP JPEG (mean, 90th percentile, max);
- caught: the share of edited uploads (``evaluation.EDITS`` without the flips and turns, which
  the dihedral hashes cover) within PDQ's match distance (31) of the partner's hash;
- nearest innocent: the smallest distance from any photo's upload to another photo's
  partner hash (far beyond 31 means no false match at any size);
- time: median CPU per PDQ of a ~2 MP upload at that size (this process, one core).

The last line reads ``pdq sizes: 1024: drift 6.3 mean, caught 60.2%, 7.1 ms; ...``.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(ROOT.parent / "shared" / "corpus" / "photos"))
    parser.add_argument("--sides", type=int, nargs="+", default=[1024, 768, 640, 512])
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image, ImageOps
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

    from moderation import pdq
    from moderation.decoding import decode_for_hashing
    from moderation.evaluation import EDITS
    from profiles.photos import reencode_photo

    turned = ("mirror", "rotate 90", "rotate 180", "rotate 270", "EXIF")
    edits = [e for e in EDITS if not e.name.startswith(turned)]
    paths = sorted(
        p for p in Path(args.photos).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    if not paths:
        raise SystemExit(f"no photos in {args.photos}")

    def bits_apart(a: str, b: str) -> int:
        return (int(a, 16) ^ int(b, 16)).bit_count()

    def as_stored(data: bytes):
        stored = reencode_photo(SimpleUploadedFile("upload.jpg", data)).read()
        return decode_for_hashing(io.BytesIO(stored)).image

    def two_mp(img: Image.Image) -> bytes:
        scale = min(1.0, (2_000_000 / (img.width * img.height)) ** 0.5)
        small = img.resize((int(img.width * scale), int(img.height * scale)))
        out = io.BytesIO()
        small.save(out, "JPEG", quality=88)
        return out.getvalue()

    rng = random.Random(7)
    drift = {s: [] for s in args.sides}
    caught = {s: [] for s in args.sides}
    took = {s: [] for s in args.sides}
    uploads = {s: [] for s in args.sides}
    partners = []
    for path in paths:
        partner, _quality = pdq_from_file(path)
        partners.append(partner)
        with Image.open(path) as im:
            upright = ImageOps.exif_transpose(im).convert("RGB")
        plain = as_stored(two_mp(upright))
        edited = []
        for edit in edits:
            try:
                edited.append(as_stored(edit.make(upright, rng)))
            except Exception:  # noqa: BLE001 - an edit the site refuses is not a PDQ question
                continue
        for side in args.sides:
            pdq.MAX_SIDE = side
            started = time.process_time()
            ours = pdq.pdq_of_image(plain).hex
            took[side].append(time.process_time() - started)
            drift[side].append(bits_apart(ours, partner))
            uploads[side].append(ours)
            caught[side].extend(
                bits_apart(pdq.pdq_of_image(image).hex, partner) <= pdq.MATCH_DISTANCE
                for image in edited
            )

    summary = []
    print(f"{len(paths)} photos, {len(edits)} edits each, partner hash: full-size original")
    for side in args.sides:
        d = np.array(drift[side])
        nearest = min(
            bits_apart(u, p)
            for i, u in enumerate(uploads[side])
            for j, p in enumerate(partners)
            if i != j
        )
        rate = 100 * sum(caught[side]) / len(caught[side])
        ms = statistics.median(took[side]) * 1000
        print(
            f"MAX_SIDE {side:5d}: drift mean {d.mean():.1f} p90 {np.percentile(d, 90):.0f} "
            f"max {d.max()} bits; edits caught {rate:.1f}% of {len(caught[side])}; "
            f"nearest innocent {nearest} bits; {ms:.2f} ms per PDQ"
        )
        summary.append(f"{side}: drift {d.mean():.1f} mean, caught {rate:.1f}%, {ms:.1f} ms")
    print("pdq sizes: " + "; ".join(summary))


if __name__ == "__main__":
    main()
