"""Which captions the caption band reaches: recall against the size and placement of the text.

    python benchmarks/caption_coverage.py [PHOTOS_DIR]     (default ../shared/corpus/photos)

``evaluate_matching`` scores one caption (a line at the top and one at the bottom, 1/9 of the
height); this script sweeps the caption -- text 1/14 to 1/6 of the height, one or two lines,
at the top, the bottom or both -- so the band (``variants.BAND_CUT``) is not tuned to that one
point. Every photo is flagged on its own, as the flag service does it (``fingerprint_variants``),
and its captioned copies (JPEG q90, like the evaluation's edits) go through the upload path
(``upload_fingerprints``, ``BannedIndex.check`` with the upload's cuts) at the site's rule.
"without band" scores the same copies against the flag's other variants and the upload's other
cuts: what was caught before flags stored the band. Photos the low-information gate refuses are
left out. Prints a Markdown table; about a minute for the 72 corpus photos. Not part of the
test run.
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

from moderation import evaluation, matching  # noqa: E402
from moderation.management.commands._files import iter_image_paths  # noqa: E402
from moderation.screening import upload_fingerprints  # noqa: E402
from moderation.variants import BAND, BAND_CUT  # noqa: E402

HEIGHTS = (14, 12, 9, 7, 6)  # text size: 1/N of the picture's height
PLACES = (("top", 1), ("top", 2), ("bottom", 1), ("bottom", 2), ("both", 1), ("both", 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", nargs="?", default="../shared/corpus/photos")
    args = parser.parse_args()
    photos = evaluation.load_photos(iter_image_paths([args.photos]), [])
    rule = matching.MatchRule.from_settings()
    counts = {(h, place): [0, 0] for h in HEIGHTS for place in PLACES}  # [with, without]
    flagged = 0
    for photo in photos:
        entries = evaluation.flag_alone(photo)
        if entries is None:
            continue
        flagged += 1
        with_band = evaluation.index_of(entries)
        without = evaluation.index_of(entries, leave_out={BAND})
        for height in HEIGHTS:
            for where, lines in PLACES:
                img = evaluation.caption(photo.image, height=height, where=where, lines=lines)
                checked = upload_fingerprints(io.BytesIO(evaluation._encode(img, "JPEG")))
                fp, cuts = checked.frames[0], checked.cuts
                other_cuts = {n: c for n, c in cuts.items() if n != BAND}
                row = counts[(height, (where, lines))]
                row[0] += with_band.check(fp, rule, cuts=cuts).blocked
                row[1] += without.check(fp, rule, cuts=other_cuts).blocked
    header = " | ".join(f"{where}, {lines} line{'s' * (lines > 1)}" for where, lines in PLACES)
    print(f"| text height | | {header} |")
    print("|---" * (len(PLACES) + 2) + "|")
    for height in HEIGHTS:
        for i, label in ((1, "without band"), (0, f"band {BAND_CUT:.0%}")):
            cells = " | ".join(f"{counts[(height, p)][i] / flagged:.2f}" for p in PLACES)
            print(f"| 1/{height} | {label} | {cells} |")
    print()
    print(f"rule: dHash <= {rule.max_distance} AND pHash <= {rule.max_confirm_distance}; "
          f"{flagged} photos, each flagged alone; caption copies saved as JPEG q90")


if __name__ == "__main__":
    main()
