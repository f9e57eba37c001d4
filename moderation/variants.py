"""The variants of a flagged image: which fingerprints of it the banned set stores.

An upload is fingerprinted once (its own dHash and pHash) and looked up by dHash; everything
that makes a *copy* of a banned image findable lives on the banned side, as extra fingerprints
of each flag. A variant is one way of looking at the flagged image:

- the 8 **orientations** (flips and quarter turns; the set EXIF orientations 1-8 name), so a
  mirrored or rotated copy is found by its own dHash;
- a few **crops** of the upright image. dHash and pHash both describe the whole frame, so a
  copy with a strip cut off one side shifts every thumbnail pixel: measured on the corpus, a
  10% one-sided crop lands 12-20 dHash bits from the original and only about a quarter of them
  were caught. A stored fingerprint of the image already cut on that side puts such a copy back
  within a few bits. Which crops, and why these fractions, is measured with
  ``manage.py evaluate_matching`` (README, "What it catches").

Variant numbers are stored (``FingerprintVariant.variant``, ``BannedSetChange.variant``) and
exchanged in hash-list exports, so they are never renumbered: a new variant is appended. The
index key of a variant is ``flag id * len(VARIANTS) + number`` (``matching.entry_key``); the key
is never stored, so appending a variant only needs ``manage.py reindex`` (a pipeline version
bump) to fill it in for existing flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

# Fractions of the width and height cut off (left, top, right, bottom).
Cut = tuple[float, float, float, float]
NO_CUT: Cut = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Variant:
    """One stored view of a flagged image: cut by ``cut`` (in the upright image), then turned
    by ``transpose``. ``label`` is what staff read (admin, ``check_image``)."""

    label: str
    transpose: Image.Transpose | None = None
    cut: Cut = NO_CUT

    @property
    def is_crop(self) -> bool:
        return self.cut != NO_CUT


# One-sided crops cut this share of the width (left, right) or height (top, bottom). Measured
# (README): a stored 8% cut brings copies cut by 5-12% on that side within reach of the rule,
# and the untouched upright already covers 0-5%.
SIDE_CUT = 0.08
# The centred crop cuts this share of the width and of the height, half on each side: it
# covers centred crops of about 8-15%, where the upright stops reaching.
CENTRE_CUT = 0.12

VARIANTS: tuple[Variant, ...] = (
    Variant("upright"),
    Variant("mirrored", Image.Transpose.FLIP_LEFT_RIGHT),
    Variant("turned 90° anticlockwise", Image.Transpose.ROTATE_90),
    Variant("turned 180°", Image.Transpose.ROTATE_180),
    Variant("turned 90° clockwise", Image.Transpose.ROTATE_270),
    Variant("flipped upside down", Image.Transpose.FLIP_TOP_BOTTOM),
    Variant("transposed", Image.Transpose.TRANSPOSE),
    Variant("transversed", Image.Transpose.TRANSVERSE),
    Variant(f"{SIDE_CUT:.0%} cut off the left", cut=(SIDE_CUT, 0.0, 0.0, 0.0)),
    Variant(f"{SIDE_CUT:.0%} cut off the right", cut=(0.0, 0.0, SIDE_CUT, 0.0)),
    Variant(f"{SIDE_CUT:.0%} cut off the top", cut=(0.0, SIDE_CUT, 0.0, 0.0)),
    Variant(f"{SIDE_CUT:.0%} cut off the bottom", cut=(0.0, 0.0, 0.0, SIDE_CUT)),
    Variant(f"centre ({CENTRE_CUT:.0%} cut around)", cut=(CENTRE_CUT / 2,) * 4),
)

# The orientations alone (numbers 0-7), as (label, transpose).
ORIENTATIONS: tuple[tuple[str, Image.Transpose | None], ...] = tuple(
    (v.label, v.transpose) for v in VARIANTS if not v.is_crop
)

# For model fields and forms: (number, label).
CHOICES: list[tuple[int, str]] = [(number, v.label) for number, v in enumerate(VARIANTS)]


def crop_box(size: tuple[int, int], cut: Cut) -> tuple[int, int, int, int]:
    """The pixel box (left, upper, right, lower) that remains of an image of ``size``."""
    width, height = size
    left, top, right, bottom = cut
    return (
        round(width * left),
        round(height * top),
        width - round(width * right),
        height - round(height * bottom),
    )
