"""Which crops the stored variants reach: recall against how much of the frame was cut.

    python benchmarks/crop_coverage.py [PHOTOS_DIR]     (default ../shared/corpus/photos)

``evaluate_matching`` scores a few fixed edits (crops of 5, 10 and 20%); this script shows the
whole curve, so the crop variants of ``moderation/variants.py`` are not tuned to those three
points. Every photo is flagged on its own, as the flag service does it
(``evaluation.flag_alone``, the variants a flag stores), and cropped copies of it -- one side cut
(each of the 4 sides) or cut around, saved as JPEG q90 like the evaluation's edits -- are looked
up through the upload path (``fingerprint`` of the file) at the site's rule. A row "8
orientations" scores the same lookups against the orientation entries only (what flags stored
before pipeline 4). Photos the low-information gate refuses are left out. Prints a Markdown
table; about a minute for the 72 corpus photos. Not part of the test run.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from moderation import banned_index, evaluation, matching  # noqa: E402
from moderation.hashing import fingerprint  # noqa: E402
from moderation.management.commands._files import iter_image_paths  # noqa: E402
from moderation.variants import VARIANTS  # noqa: E402

ONE_SIDE = (0.025, 0.05, 0.075, 0.10, 0.125, 0.15, 0.175, 0.20)
AROUND = (0.05, 0.075, 0.10, 0.125, 0.15, 0.175, 0.20, 0.225, 0.25)


def caught(
    index: banned_index.BannedIndex, data: bytes, rule: matching.MatchRule
) -> tuple[bool, bool]:
    """(blocked by any stored variant, blocked by an orientation alone)."""
    fp = fingerprint(io.BytesIO(data))
    hits = [m for m in index.candidates(fp, rule.radius) if rule.matches(m)]
    return bool(hits), any(not VARIANTS[m.variant].is_crop for m in hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", nargs="?", default="../shared/corpus/photos")
    args = parser.parse_args()
    photos = evaluation.load_photos(iter_image_paths([args.photos]), [])
    rule = matching.MatchRule.from_settings()
    rows = {"one": {f: [0, 0, 0] for f in ONE_SIDE}, "around": {f: [0, 0, 0] for f in AROUND}}
    for photo in photos:
        entries = evaluation.flag_alone(photo)
        if entries is None:
            continue
        index = evaluation.index_of(entries)
        for fraction in ONE_SIDE:
            for side in evaluation.SIDES:
                data = evaluation._encode(evaluation._crop_side(photo.image, fraction, side))
                for i, hit in enumerate(caught(index, data, rule)):
                    rows["one"][fraction][i] += hit
                rows["one"][fraction][2] += 1
        for fraction in AROUND:
            data = evaluation._encode(evaluation._crop(photo.image, fraction))
            for i, hit in enumerate(caught(index, data, rule)):
                rows["around"][fraction][i] += hit
            rows["around"][fraction][2] += 1
    crops = ", ".join(v.label for v in VARIANTS if v.is_crop)
    for key, title in (("one", "cut off one side (all 4 sides)"), ("around", "cut around")):
        counts = rows[key]
        print(f"| {title} | " + " | ".join(f"{f:.1%}".replace(".0%", "%") for f in counts) + " |")
        print("|---" * (len(counts) + 1) + "|")
        print("| 8 orientations | " + " | ".join(f"{o / n:.2f}" for _, o, n in counts.values())
              + " |")
        print(f"| all {len(VARIANTS)} variants | "
              + " | ".join(f"{a / n:.2f}" for a, _, n in counts.values()) + " |")
        print()
    print(f"crop variants: {crops}; rule: dHash <= {rule.max_distance} AND pHash <= "
          f"{rule.max_confirm_distance}; {rows['around'][AROUND[0]][2]} photos")


if __name__ == "__main__":
    main()
