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
  ``manage.py evaluate_matching`` (docs/matching.md, "What it catches").

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

    @property
    def is_reflection(self) -> bool:
        """A mirror image of the upright picture (not only turned): a copy matched through it
        is verified against the mirrored picture's features."""
        return self.transpose in _REFLECTIONS


_REFLECTIONS = {
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
}


# Which crops, measured on the corpus photos with `python benchmarks/crop_coverage.py` (copies
# cut, saved as JPEG q90, looked up at the default rule; share of photos caught;
# docs/matching.md, "What it catches"):
#
#   cut off one side (all 4 sides)  2.5%  5%    7.5%  10%   12.5% 15%   17.5% 20%
#   orientations only               1.00  0.98  0.82  0.48  0.24  0.10  0.05  0.03
#   + the 4 sides cut by 8%         1.00  1.00  1.00  1.00  0.98  0.73  0.38  0.21
#
#   cut around (centred)            5%    7.5%  10%   12.5% 15%   17.5% 20%   22.5% 25%
#   orientations only               1.00  0.96  0.77  0.54  0.38  0.17  0.14  0.08  0.08
#   + sides 8% + centre 15%         1.00  1.00  1.00  1.00  1.00  1.00  0.99  0.86  0.49
#
# Each stored cut reaches a few percent either side of itself, so one cut per side placed past
# where the upright stops (~7%) covers the usual one-sided crops; the centre cut sits between
# the 10% and 20% crops people make and reaches both. 6% and 12% per side (4 more entries)
# would reach 15% one-sided crops; not worth 30% more memory per flag for now.
SIDE_CUT = 0.08
CENTRE_CUT = 0.15

# The caption band: the picture with the top and bottom 20% cut off, where meme captions,
# "when you see it" lines and channel names go. Text drawn over a photo changes every dHash cell
# it covers; cut away on both sides (the flag's band and the upload's band, compared like with
# like) the two are the same picture again. Measured with `python benchmarks/caption_coverage.py`
# (captions of 1/14 to 1/6 of the height, one or two lines, top, bottom or both;
# docs/matching.md, "What it catches"): 0.15 and 0.18 leave the lower edge of a two-line
# caption at 1/9 of the height in the band, 0.22-0.25 gain little more and keep less of the
# picture to tell photos apart.
BAND_CUT = 0.20

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
    Variant(f"caption band (top and bottom {BAND_CUT:.0%} cut)",
            cut=(0.0, BAND_CUT, 0.0, BAND_CUT)),
)

# The numbers of the centre and the caption band.
CENTRE = next(n for n, v in enumerate(VARIANTS) if v.cut == (CENTRE_CUT / 2,) * 4)
BAND = next(n for n, v in enumerate(VARIANTS) if v.cut == (0.0, BAND_CUT, 0.0, BAND_CUT))

# The cuts an upload is fingerprinted as too (same decode, ``hashing.check_fingerprints``), each
# compared with the same variant of the flags and only with it: an edit that adds something at
# the edges (black corners of a turned copy, caption text) leaves the upload's cut and the flag's
# cut alike, while comparing a cut with every other variant would only add chances of collision.
UPLOAD_CUTS: tuple[int, ...] = (CENTRE, BAND)

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
