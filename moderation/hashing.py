"""The perceptual fingerprint of an image: a 64-bit dHash finds candidates, a pHash confirms.

Pure functions, no ORM: the validator, the flag service, the commands and the benchmarks all
come through here, so an upload and a flagged original are always hashed the same way. Files
are opened, checked and prepared by ``moderation.decoding``.

The dHash is ImageHash's 64-bit difference hash of the prepared image, and the index key: for
the same prepared pixels ``Fingerprint.hex == str(imagehash.dhash(img))``, bit for bit. A large
JPEG is decoded at reduced scale, and then its dHash is that of the reduced decode expanded
back to full size, computed without building it (``moderation.resampling``):
``fingerprint(f).hex == str(imagehash.dhash(decoding.open_for_hashing(f)))``. dHash is never
approximated further: it compares neighbouring grey levels, which any shortcut moves.

The pHash (ImageHash's: the top-left 8x8 of the DCT of a 32x32 grey thumbnail, each bit "above
the median") confirms a candidate before an upload is blocked. dHash compares neighbours (local
gradients), pHash compares low frequencies with each other (global layout): two different
photos that collide on one rarely collide on both. Its thumbnail comes from Pillow's
``reducing_gap`` (``phash_thumbnail``), not from the exact resize, which would cost as much as
all the rest of the fingerprint: ``Fingerprint.phash == imagehash.phash(thumbnail)`` for that
thumbnail, and within a few bits of the exact pHash, well inside what the confirmation allows.

``Fingerprint.information`` says how many of the 64 dHash bits carry information: a bit whose
two neighbouring thumbnail pixels differ by less than ``DECIDED_LEVELS`` grey levels is decided
by noise (fog, sky, a flat wall), and a hash that is nearly all ones or all zeros (a smooth
left-to-right gradient) sits in the densest corner of the hash space. The measure is
``min(decided bits, 2 x min(ones, zeros))``, 0..64; flagging refuses images below
``MODERATION_MIN_INFORMATION``.

From one decode, a flag is fingerprinted as every variant of ``variants.VARIANTS``
(``fingerprint_variants``: the 8 flips and quarter turns, a few crops), so a mirrored, rotated
or cropped copy is looked up by its own dHash like any other copy; an upload as its frames, its
cuts and the picture inside its frame (``check_fingerprints``).

What was measured to choose all this, and how to measure it again: docs/fingerprinting.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import IO, Any

import numpy as np
import scipy.fftpack
from PIL import Image

from moderation.decoding import (
    JPEG_FORMATS,
    TRANSPOSE_CELLS,
    Decoded,
    decode_for_hashing,
    map_further_frames,
)
from moderation.framing import SEARCH_SIDE, picture_box
from moderation.pdq import Pdq, dihedral_of_image, pdq_of_image
from moderation.probes import EVERY_VARIANT, pack_probes, unpack_probes
from moderation.resampling import (
    horizontal_first,
    horizontal_pass,
    lanczos_thumbnail_of_expanded,
)
from moderation.variants import UPLOAD_CUTS, VARIANTS, Variant, crop_box

# Bump when anything changes the hash of the same file or the fingerprints a flag stores
# (here, in moderation.decoding, moderation.resampling, moderation.variants, the verification
# signal a flag stores, moderation.verification, or its PDQs, moderation.pdq): stored
# fingerprints record the version that made them, and `manage.py reindex` recomputes the ones
# that are older.
PIPELINE_VERSION = 8

HASH_BITS = 64
_UNSIGNED_MAX = (1 << HASH_BITS) - 1
HASH_SIZE = 8  # imagehash.dhash's default: a 9x8 grey thumbnail, 8x8 comparisons
PHASH_THUMBNAIL = 32  # imagehash.phash's default: 32x32 grey thumbnail, top-left 8x8 of its DCT
# Pillow's reducing_gap for the pHash thumbnail: a box reduction by an integer factor first,
# then Lanczos from at least this many times the thumbnail size. Smaller gaps (and bilinear or
# bicubic) are cheaper and further from the exact pHash. Small images take gap 4: as close, and
# there this thumbnail is much of the fingerprint's cost. (docs/fingerprinting.md)
PHASH_REDUCING_GAP = 8.0
PHASH_SMALL_REDUCING_GAP = 4.0
PHASH_SMALL_SIDE = 1024  # shorter side (as decoded) below which an image counts as small

# A dHash bit is "decided" when its two thumbnail pixels differ by at least this many grey
# levels (of 255); smaller differences flip with a re-encode or a brightness change. Chosen on
# the corpus, where it sets near-flat photos well apart from the rest (docs/fingerprinting.md).
DECIDED_LEVELS = 3


def to_signed(value: int) -> int:
    """Unsigned 64-bit hash -> signed 64-bit integer (two's complement) for BigIntegerField."""
    if not 0 <= value <= _UNSIGNED_MAX:
        raise ValueError(f"not an unsigned 64-bit value: {value}")
    return value - (1 << HASH_BITS) if value >> (HASH_BITS - 1) else value


def to_unsigned(value: int) -> int:
    """Signed 64-bit integer as stored in the database -> unsigned 64-bit hash."""
    if not -(1 << (HASH_BITS - 1)) <= value < (1 << (HASH_BITS - 1)):
        raise ValueError(f"not a signed 64-bit value: {value}")
    return value & _UNSIGNED_MAX


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two unsigned 64-bit hashes."""
    return (a ^ b).bit_count()


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A 64-bit dHash, its confirming pHash, its information and the pipeline version.

    ``phash`` and ``information`` are None for a fingerprint rebuilt from a stored dHash alone
    (a row written before pipeline version 3, or a hex typed by a moderator).
    """

    dhash: int
    pipeline_version: int = PIPELINE_VERSION
    phash: int | None = field(default=None, kw_only=True)
    # A soft measure, not part of the identity: a grey level more or less in one thumbnail
    # pixel can move it by one while both hashes stay the same.
    information: int | None = field(default=None, kw_only=True, compare=False)
    # The PDQ of the same picture (``moderation.pdq``), when it was computed from the pixels:
    # an upload's own, a flag's orientations. Another signal, not part of the dHash identity.
    pdq: Pdq | None = field(default=None, kw_only=True, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.dhash <= _UNSIGNED_MAX:
            raise ValueError(f"dhash must be an unsigned 64-bit integer, got {self.dhash}")
        if self.phash is not None and not 0 <= self.phash <= _UNSIGNED_MAX:
            raise ValueError(f"phash must be an unsigned 64-bit integer, got {self.phash}")
        if self.information is not None and not 0 <= self.information <= HASH_BITS:
            raise ValueError(f"information must be 0..64, got {self.information}")

    @property
    def phash_signed(self) -> int | None:
        return None if self.phash is None else to_signed(self.phash)

    @property
    def hex(self) -> str:
        return f"{self.dhash:016x}"

    @property
    def signed(self) -> int:
        return to_signed(self.dhash)

    @classmethod
    def from_hex(cls, text: str, pipeline_version: int = PIPELINE_VERSION) -> Fingerprint:
        text = text.strip().lower()
        if len(text) != 16 or any(c not in "0123456789abcdef" for c in text):
            raise ValueError(f"a fingerprint is 16 hex digits, got {text!r}")
        return cls(int(text, 16), pipeline_version)

    @classmethod
    def from_signed(
        cls,
        value: int,
        pipeline_version: int = PIPELINE_VERSION,
        *,
        phash: int | None = None,
        information: int | None = None,
    ) -> Fingerprint:
        """From the signed columns a row stores (``phash`` signed too, None when absent)."""
        return cls(
            to_unsigned(value),
            pipeline_version,
            phash=None if phash is None else to_unsigned(phash),
            information=information,
        )

    def distance(self, other: Fingerprint) -> int:
        return hamming(self.dhash, other.dhash)

    def __str__(self) -> str:
        return self.hex


# --- Hashing -----------------------------------------------------------------------------


def _bits(diff: np.ndarray) -> int:
    """A boolean 8x8 array as ImageHash orders it (row-major, first bit most significant)."""
    return int.from_bytes(np.packbits(diff.ravel()).tobytes(), "big")


def _fingerprint_of_thumbnails(dthumb: np.ndarray, pthumb: np.ndarray) -> Fingerprint:
    """dHash, pHash and information from the 9x8 and 32x32 grey thumbnails (uint8)."""
    # imagehash.dhash: each pixel brighter than its left neighbour.
    diff = dthumb[:, 1:] > dthumb[:, :-1]
    # imagehash.phash: 2-D DCT-II of the thumbnail, top-left 8x8, above their median.
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pthumb, axis=0), axis=1)[:HASH_SIZE, :HASH_SIZE]
    decided = np.abs(dthumb[:, 1:].astype(np.int16) - dthumb[:, :-1]) >= DECIDED_LEVELS
    ones = int(diff.sum())
    return Fingerprint(
        _bits(diff),
        phash=_bits(dct > np.median(dct)),
        information=min(int(decided.sum()), 2 * min(ones, HASH_BITS - ones)),
    )


def phash_thumbnail(grey: Image.Image) -> np.ndarray:
    """The 32x32 grey thumbnail the pHash is taken from: Pillow's Lanczos after a box
    reduction (``PHASH_REDUCING_GAP``), not the exact resize (see the module docstring)."""
    small = min(grey.size) < PHASH_SMALL_SIDE
    return np.asarray(
        grey.resize(
            (PHASH_THUMBNAIL, PHASH_THUMBNAIL),
            Image.Resampling.LANCZOS,
            reducing_gap=PHASH_SMALL_REDUCING_GAP if small else PHASH_REDUCING_GAP,
        )
    )


def fingerprint_image(img: Image.Image) -> Fingerprint:
    """The fingerprint of an already prepared image (see ``decoding.open_image``).

    ``hex == str(imagehash.dhash(img))`` and
    ``phash == int(str(imagehash.phash(Image.fromarray(phash_thumbnail(grey)))), 16)``.
    """
    grey = img if img.mode == "L" else img.convert("L")
    # The same bytes as Pillow's resize, from BLAS products, in about half the time.
    ones_x = np.ones(grey.width, dtype=np.int64)
    ones_y = np.ones(grey.height, dtype=np.int64)
    dthumb = lanczos_thumbnail_of_expanded(
        np.asarray(grey), ones_x, ones_y, (HASH_SIZE + 1, HASH_SIZE)
    )
    return _fingerprint_of_thumbnails(dthumb, phash_thumbnail(grey))


class _RowPasses:
    """What the variants of one upright decode share: its grey pixels as one array, and the
    dHash thumbnail's first pass over every row of it.

    Pillow's resize to 9x8 goes across first for any picture not far taller than wide, and a
    row's pass depends only on that row and on the columns' weights: a cut that keeps every
    column (the top, the bottom, the caption band, a letterboxed picture) takes the rows it
    keeps of the whole picture's pass (``resampling.horizontal_pass``), not computed again.
    For a 2 MP upload, whole picture and cuts: 7.2 -> 6.4 ms (benchmarks/upload_image_work.py).

    Every upright cut takes its pixels as a slice of the one array (``pixels_of``), the same
    pixels as the cut's own image. Turning a Pillow image into an array copies it (0.22 ms
    for a 2 MP grey picture here). A 2 MP upload's whole picture and its two cuts were
    converted one by one, about 0.45 ms of copies in all.
    """

    def __init__(self, decoded: Decoded) -> None:
        self._decoded = decoded
        self._pixels: np.ndarray | None = None
        self._across: np.ndarray | None = None

    def _whole(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.asarray(_grey(self._decoded.image))
        return self._pixels

    def pixels_of(self, variant: Variant) -> np.ndarray | None:
        """The grey pixels of an upright ``variant`` (a view into the whole picture's), or None
        for a turned one."""
        if variant.transpose is not None:
            return None
        if not variant.is_crop:
            return self._whole()
        decoded = self._decoded
        rows, columns = decoded.samples_kept(crop_box(decoded.full_size, variant.cut))
        return self._whole()[rows, columns]

    def across(self, variant: Variant) -> np.ndarray | None:
        """The first pass of ``variant``'s dHash thumbnail, or None where it is not shared."""
        decoded = self._decoded
        if variant.transpose is not None:
            return None
        if not horizontal_first(*decoded.full_size, (HASH_SIZE + 1, HASH_SIZE)):
            return None  # and so for no cut of it worth sharing
        if variant.is_crop:
            box = crop_box(decoded.full_size, variant.cut)
            if not decoded.keeps_every_column(box):
                return None
            rows = decoded.rows_kept(box)
        else:
            rows = slice(None)
        if self._across is None:
            self._across = horizontal_pass(self._whole(), decoded.cells_x, HASH_SIZE + 1)
        return self._across[:, rows]


def _grey(image: Image.Image) -> Image.Image:
    return image if image.mode == "L" else image.convert("L")


def _fingerprint_decoded(
    decoded: Decoded, variant: Variant = VARIANTS[0], passes: _RowPasses | None = None
) -> Fingerprint:
    """The fingerprint of one variant of a decoded image (cut, then turned), at any scale.
    ``passes``: the decode's shared first passes, for a caller hashing several variants."""
    across = pixels = None
    if passes is not None:
        across, pixels = passes.across(variant), passes.pixels_of(variant)
    if variant.is_crop:
        decoded = decoded.cropped(crop_box(decoded.full_size, variant.cut))
    transpose = variant.transpose
    grey = _grey(decoded.image)
    if transpose is not None:
        grey = grey.transpose(transpose)
    if decoded.scale == 1 and across is None and pixels is None:
        return fingerprint_image(grey)
    cells_x, cells_y = decoded.cells_x, decoded.cells_y
    if transpose is not None:
        cells_x, cells_y = TRANSPOSE_CELLS[transpose](cells_x, cells_y)
    # The dHash thumbnail imagehash would make of the expanded image, computed from the reduced
    # one; the pHash thumbnail straight from the reduced pixels.
    return _fingerprint_of_thumbnails(
        lanczos_thumbnail_of_expanded(
            np.asarray(grey) if pixels is None else pixels,
            cells_x,
            cells_y,
            (HASH_SIZE + 1, HASH_SIZE),
            across=across,
        ),
        phash_thumbnail(grey),
    )


def fingerprint(file: str | os.PathLike | IO[bytes] | Any) -> Fingerprint:
    """Open ``file`` safely and fingerprint it. Raises ``ValidationError`` on bad input."""
    return _fingerprint_decoded(decode_for_hashing(file))


def fingerprint_with_pdq(file: str | os.PathLike | IO[bytes] | Any) -> Fingerprint:
    """``fingerprint(file)`` with its PDQ (``Fingerprint.pdq``), from the same decode."""
    decoded = decode_for_hashing(file)
    return _with_pdq(_fingerprint_decoded(decoded), pdq_of_image(decoded.image))


def fingerprint_variants(file: str | os.PathLike | IO[bytes] | Any) -> list[Fingerprint]:
    """The fingerprints of every variant of ``file``, indexed as ``variants.VARIANTS``.

    Item 0 equals ``fingerprint(file)``; the 8 orientations carry their PDQ (``pdq``, from
    one dihedral computation on the same decode), the crops none. An orientation's
    fingerprint is that of the image transposed by it, a crop's that of the upright image cut
    by it (decoded once; at full size ``== str(imagehash.dhash(img.crop(box)))``). Same
    checks and errors as ``fingerprint``.
    Flagging and reindexing call this; an upload never does (it needs only its own).
    """
    decoded = decode_for_hashing(file)
    pdqs = dihedral_of_image(decoded.image)
    passes = _RowPasses(decoded)
    return [
        _with_pdq(
            _fingerprint_decoded(decoded, variant, passes), pdqs[i] if i < len(pdqs) else None
        )
        for i, variant in enumerate(VARIANTS)
    ]


def _with_pdq(fp: Fingerprint, pdq: Pdq | None) -> Fingerprint:
    return replace(fp, pdq=pdq) if pdq is not None else fp


@dataclass(frozen=True)
class CheckFingerprints:
    """What an upload is checked with: every frame's fingerprint; the first frame cut as each
    of ``variants.UPLOAD_CUTS`` (``cuts``: variant number -> fingerprint), each compared with
    that variant of the flags only; and ``inner``, the picture inside a flat frame (padding, a
    screenshot's blank space; ``moderation.framing``) when the first frame has one, compared
    like the whole upload. Cutting the edges takes away what edits add there: the black corners
    of a slightly rotated copy (the centre), a meme caption (the caption band), a frame."""

    frames: list[Fingerprint]
    cuts: dict[int, Fingerprint]
    inner: Fingerprint | None = None

    def probe_bytes(self) -> bytes:
        """The cuts and the framed picture packed for storage (``probes.pack_probes``): what a
        registered model stores beside its image's own fingerprint, so that sweeps compare a
        stored image as the upload path compared it."""
        rows = [(number, fp.signed, fp.phash_signed) for number, fp in self.cuts.items()]
        if self.inner is not None:
            rows.append((None, self.inner.signed, self.inner.phash_signed))
        return pack_probes(rows)


def probes_from_bytes(
    data: bytes | memoryview | None, pipeline_version: int = PIPELINE_VERSION
) -> tuple[dict[int, Fingerprint], Fingerprint | None]:
    """``(cuts, inner)`` from stored probe bytes (``CheckFingerprints.probe_bytes``, format in
    ``moderation.probes``), as ``BannedIndex.check`` takes them; ({}, None) for none."""
    cuts: dict[int, Fingerprint] = {}
    inner = None
    for number, dhash, phash in unpack_probes(data).tolist():
        fp = Fingerprint.from_signed(dhash, pipeline_version, phash=phash)
        if number == EVERY_VARIANT:
            inner = fp
        else:
            cuts[number] = fp
    return cuts, inner


def _picture_in_frame(decoded: Decoded, grey: Image.Image) -> Variant | None:
    """The picture inside a flat frame of ``decoded`` (``framing.picture_box``, searched on a
    small copy of ``grey``), as a cut of the full-size image; None when there is no frame."""
    factor = -(-max(grey.size) // SEARCH_SIDE)  # ceiling division
    small = grey.reduce(factor) if factor > 1 else grey
    box = picture_box(np.asarray(small))
    if box is None:
        return None
    # Small-copy samples -> decoded samples -> full-size pixels.
    left, top = box[0] * factor, box[1] * factor
    right, bottom = min(box[2] * factor, grey.width), min(box[3] * factor, grey.height)
    ends_x, ends_y = np.cumsum(decoded.cells_x), np.cumsum(decoded.cells_y)
    full_w, full_h = int(ends_x[-1]), int(ends_y[-1])
    x0 = int(ends_x[left - 1]) if left else 0
    y0 = int(ends_y[top - 1]) if top else 0
    x1, y1 = int(ends_x[right - 1]), int(ends_y[bottom - 1])
    return Variant(
        "picture inside a frame",
        cut=(x0 / full_w, y0 / full_h, (full_w - x1) / full_w, (full_h - y1) / full_h),
    )


def check_fingerprints(
    file: str | os.PathLike | IO[bytes] | Any, *, max_frames: int | None = None
) -> CheckFingerprints:
    """The fingerprint of every frame an upload holds (first frame first, with its PDQ), the
    first frame's cuts and the picture inside its frame, from one decode of the file.

    A banned picture can hide as any frame of an animation (GIF, APNG, WebP), so the upload
    validator compares them all. A still image (or a multi-picture JPEG, whose extra pictures
    are previews and depth maps) has one frame, and the file is not looked at again. See
    ``further_frame_fingerprints`` for the bounds on animations.
    """
    decoded = decode_for_hashing(file)  # every check on the file itself happens here
    passes = _RowPasses(decoded)
    first = _with_pdq(_fingerprint_decoded(decoded, passes=passes), pdq_of_image(decoded.image))
    cuts = {n: _fingerprint_decoded(decoded, VARIANTS[n], passes) for n in UPLOAD_CUTS}
    grey = _grey(decoded.image)
    framed = _picture_in_frame(decoded, grey)
    inner = None if framed is None else _fingerprint_decoded(decoded, framed, passes)
    if decoded.format in JPEG_FORMATS:
        return CheckFingerprints([first], cuts, inner)
    return CheckFingerprints(
        [first, *further_frame_fingerprints(file, max_frames=max_frames)], cuts, inner
    )


def further_frame_fingerprints(
    file: str | os.PathLike | IO[bytes] | Any, *, max_frames: int | None = None
) -> list[Fingerprint]:
    """The fingerprints of an animation's frames after the first ([] for a still image).

    For a caller that has already checked and hashed the first frame (or a re-encoding of it):
    this reads only the header of a still image. The work is bounded before it is done: at most
    ``MODERATION_MAX_FRAMES`` frames, and no more than fit in ``MODERATION_MAX_PIXELS`` decoded
    pixels all together; an animation with more is refused (``too_many_frames``) after reading
    one frame header past the limit (``decoding.map_further_frames``).
    """
    return map_further_frames(file, fingerprint_image, max_frames=max_frames)
