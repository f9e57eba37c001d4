"""How far apart are copies, and how close are different photos? Evidence for the default
MODERATION_MAX_DISTANCE.

    python benchmarks/distance_survey.py [PHOTOS_DIR]      (default ../shared/corpus/photos)

For every photo it makes the routine copies people re-upload (resized 50%, JPEG q40, 15%
brighter, 15% darker, 5% crop) and prints the dHash distance distribution per edit, then the
smallest distances between *different* photos (the false-positive risk).
`evaluate_matching` does this properly; this is the quick look behind the first default.
"""

from __future__ import annotations

import io
import itertools
import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from PIL import Image, ImageEnhance  # noqa: E402

from moderation.hashing import fingerprint, hamming  # noqa: E402


def jpeg(img: Image.Image, quality: int) -> io.BytesIO:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=quality)
    out.seek(0)
    return out


EDITS = {
    "resize 50%": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "jpeg q40": lambda im: Image.open(jpeg(im, 40)),
    "brighter 15%": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "darker 15%": lambda im: ImageEnhance.Brightness(im).enhance(0.85),
    "crop 5%": lambda im: im.crop(
        (im.width // 40, im.height // 40, im.width - im.width // 40, im.height - im.height // 40)
    ),
}


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpus/photos")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    originals = {}
    edits: dict[str, list[int]] = {name: [] for name in EDITS}
    for path in paths:
        fp = fingerprint(path)
        originals[path.name] = fp.dhash
        with Image.open(path) as im:
            im = im.convert("RGB")
            for name, edit in EDITS.items():
                edited = fingerprint(jpeg(edit(im), 92)).dhash
                edits[name].append(hamming(fp.dhash, edited))
    print(f"{len(paths)} photos from {folder}\n")
    print(f"{'edit':<14} " + " ".join(f"<={d:<3}" for d in range(0, 13, 2)) + "  max")
    for name, dists in edits.items():
        caught = [sum(d <= t for d in dists) / len(dists) for t in range(0, 13, 2)]
        print(f"{name:<14} " + " ".join(f"{c:5.2f}" for c in caught) + f"  {max(dists)}")
    pairs = sorted(
        (hamming(a, b), x, y) for (x, a), (y, b) in itertools.combinations(originals.items(), 2)
    )
    print(f"\n{len(pairs)} pairs of different photos; the closest:")
    for d, x, y in pairs[:8]:
        print(f"  {d:2d} bits  {x}  ~  {y}")
    for t in range(0, 13, 2):
        print(f"  pairs within {t:2d} bits: {sum(d <= t for d, _, _ in pairs)}")


if __name__ == "__main__":
    main()
