"""Which frames the upload's framed-picture lookup reaches: recall against the kind of frame.

    python benchmarks/frame_coverage.py [PHOTOS_DIR]     (default ../shared/corpus/photos)

``evaluate_matching`` scores one pad (10% white) and one screenshot layout; this script sweeps
frames -- pads of 5-30% in white, black and grey, pads on two sides only (letterbox and
pillarbox), screenshots in light and dark mode, with the status bar or the app's header right
against the picture (no blank row between), and copies saved at JPEG q60 -- so
``moderation.framing`` is not tuned to those two. Every photo is flagged on its own, as the flag
service does it, and its framed copies go through the upload path (``upload_fingerprints``,
``BannedIndex.check`` with the upload's cuts and framed picture) at the site's rule. "whole"
scores the same copies without the framed picture: what was caught before. Photos the
low-information gate refuses are left out. Prints a Markdown table; a minute or two for the 72
corpus photos. Not part of the test run.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import django
from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from moderation import evaluation, matching  # noqa: E402
from moderation.management.commands._files import iter_image_paths  # noqa: E402
from moderation.screening import upload_fingerprints  # noqa: E402


def pad(fraction: float, fill, sides: str = "all") -> Callable[[Image.Image], Image.Image]:
    def make(img: Image.Image) -> Image.Image:
        dx, dy = round(img.width * fraction), round(img.height * fraction)
        border = {"all": (dx, dy, dx, dy), "top-bottom": (0, dy, 0, dy),
                  "left-right": (dx, 0, dx, 0)}[sides]
        return ImageOps.expand(img.convert("RGB"), border=border, fill=fill)

    return make


def screenshot(dark: bool = False, header: bool = False) -> Callable[[Image.Image], Image.Image]:
    """A phone screenshot: status bar, (an app header right against the picture,) the picture
    at 90% of the width, two lines of text below; light or dark mode."""
    background, ink = ((0, 0, 0), (230, 230, 230)) if dark else ((255, 255, 255), (30, 30, 30))

    def make(img: Image.Image) -> Image.Image:
        width = img.width
        canvas = Image.new("RGB", (width, round(width * 16 / 9)), background)
        draw = ImageDraw.Draw(canvas)
        bar = max(12, width // 14)
        draw.rectangle([0, 0, width, bar], fill=(20, 20, 20) if not dark else (40, 40, 40))
        draw.text((bar // 2, bar // 5), "12:34", font=evaluation._font(bar * 3 // 5),
                  fill="white")
        shown = evaluation._resize(img.convert("RGB"), 0.9)
        top = bar * 2
        if header:  # a name and an avatar in a bar touching the picture
            draw.rectangle([0, top - bar, width, top - 1], fill=(235, 235, 240))
            draw.ellipse([bar // 4, top - bar + 2, bar * 3 // 4 + bar // 4, top - 3],
                         fill=(200, 80, 80))
            draw.text((bar * 3 // 2, top - bar + bar // 5), "someone",
                      font=evaluation._font(bar // 2), fill=(30, 30, 30))
        canvas.paste(shown, ((width - shown.width) // 2, top))
        font = evaluation._font(max(10, width // 24))
        for i, line in enumerate(("liked by someone and 1,024 others", "look at this")):
            draw.text((width // 20, top + shown.height + bar * (i + 1) // 2 + bar * i // 2),
                      line, font=font, fill=ink)
        return canvas

    return make


FRAMES: tuple[tuple[str, Callable[[Image.Image], Image.Image], int], ...] = (
    ("pad 5% white", pad(0.05, "white"), 90),
    ("pad 10% white", pad(0.10, "white"), 90),
    ("pad 20% white", pad(0.20, "white"), 90),
    ("pad 30% white", pad(0.30, "white"), 90),
    ("pad 10% black", pad(0.10, "black"), 90),
    ("pad 10% grey", pad(0.10, (128, 128, 128)), 90),
    ("pad 10% white, JPEG q60", pad(0.10, "white"), 60),
    ("letterbox 15% black (top, bottom)", pad(0.15, "black", "top-bottom"), 90),
    ("pillarbox 15% black (left, right)", pad(0.15, "black", "left-right"), 90),
    ("screenshot", screenshot(), 90),
    ("screenshot, dark mode", screenshot(dark=True), 90),
    ("screenshot, header against the picture", screenshot(header=True), 90),
    ("screenshot, JPEG q60", screenshot(), 60),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", nargs="?", default="../shared/corpus/photos")
    args = parser.parse_args()
    photos = evaluation.load_photos(iter_image_paths([args.photos]), [])
    rule = matching.MatchRule.from_settings()
    counts = {name: [0, 0] for name, _, _ in FRAMES}  # [with the framed picture, whole only]
    flagged = 0
    for photo in photos:
        entries = evaluation.flag_alone(photo)
        if entries is None:
            continue
        flagged += 1
        index = evaluation.index_of(entries)
        for name, make, quality in FRAMES:
            data = evaluation._encode(make(photo.image), "JPEG", quality=quality)
            checked = upload_fingerprints(io.BytesIO(data))
            fp = checked.frames[0]
            counts[name][0] += index.check(fp, rule, cuts=checked.cuts, inner=checked.inner).blocked
            counts[name][1] += index.check(fp, rule, cuts=checked.cuts).blocked
    print("| frame | without the framed picture | with it |")
    print("|---|---|---|")
    for name, (with_inner, whole) in counts.items():
        print(f"| {name} | {whole / flagged:.2f} | {with_inner / flagged:.2f} |")
    print()
    print(f"rule: dHash <= {rule.max_distance} AND pHash <= {rule.max_confirm_distance}; "
          f"{flagged} photos, each flagged alone")


if __name__ == "__main__":
    main()
