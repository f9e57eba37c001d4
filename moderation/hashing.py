"""Open an uploaded image safely and compute its perceptual fingerprint.

Pure functions, no ORM: the validator, the flag service, the commands and the benchmarks all
come through here, so an upload and a flagged original are always hashed the same way.

"Safely" means the file is judged by its content, not its name: only JPEG, PNG, GIF and WebP
are opened (Pillow is never allowed to guess EPS, PSD, TIFF...), the byte and pixel limits are
checked from the header before any pixel is decoded, and anything Pillow cannot decode becomes
a ``ValidationError`` with a code instead of an exception the view never expected.

The fingerprint is ImageHash's 64-bit difference hash of the *prepared* image: EXIF orientation
applied, transparency composited on white, 16-bit samples scaled to 8 bits. For the same
prepared pixels ``Fingerprint.hex == str(imagehash.dhash(img))``.

The JPEG fast path (pipeline version 2)
---------------------------------------
dHash only looks at a 9x8 grey thumbnail, so decoding a 12-24 MP JPEG in full colour at full
size is mostly wasted work. Every JPEG is decoded as luma only (libjpeg's Y channel: no chroma
upsampling, no colour conversion; Pillow's ``draft("L")``), and a large one also at 1/2 or 1/4
scale in the DCT domain (libjpeg's scaled IDCT): 6-8x faster at 12-24 MP, with a fraction of the
memory. What is hashed is then, exactly, the reduced decode *expanded back to full size*: every
reduced sample repeated over the full-size pixels it stands for (the last row and column of 8x8
blocks usually stand for fewer), see ``open_for_hashing``. That image is never built:
``fingerprint`` computes its Lanczos 9x8 thumbnail straight from the reduced pixels, with the
fixed-point arithmetic of Pillow's own resampler, so still
``fingerprint(f).hex == str(imagehash.dhash(open_for_hashing(f)))``, bit for bit.

Why not simply ``imagehash.dhash(reduced)``: dHash compares neighbouring 8-bit grey levels and
a typical photo has a few neighbours within one level of each other, so the hash flips on any
systematic error above a few hundredths of a level. Hashing the reduced image as it is, which
stretches the partial edge blocks to full ones, agreed with the full decode on 94 % (1/2),
86 % (1/4) and 75 % (1/8) of the corpus photos at 12 MP, up to 4 bits apart; the expanded image
agrees on 96 % at 12 MP and 97 % at 24 MP, never more than 2 bits apart -- what is left is the
rounding noise of the full decode itself. 1/8 is not used: its DC-only decode is biased by
~0.06 grey levels (83-86 %, up to 3 bits). Luma instead of Pillow's RGB-to-L conversion moved
one 0.3 MP photo of 72 by one bit. A JPEG is reduced only while its shorter side keeps
``HASH_DECODE_MIN_SIDE`` pixels; every other format takes the plain path (the seed's pipeline,
which is also the floor for them: PNG decoding is the cost).

Version 2 can move the hash of a JPEG (on the corpus: by 1-2 bits, for 3-4 % of the 12-24 MP
files) and of a stored photo (re-encoded from a reduced decode), hence the bump and
``manage.py reindex``.

The confirmation hash and the information measure (pipeline version 3)
------------------------------------------------------------------------
dHash finds the candidates (it is the index key); a second, independent 64-bit signal confirms
them before an upload is blocked: ImageHash's pHash (the top-left 8x8 of the DCT of a 32x32 grey
thumbnail, each bit "above the median"), computed from the same prepared image. dHash compares
neighbours (local gradients), pHash compares low frequencies with each other (global layout):
two different photos that collide on one rarely collide on both (issue 6, README).

The pHash thumbnail (pipeline version 4)
----------------------------------------
Pillow's exact Lanczos resize of a 2 MP image to 32x32 costs ~5 ms, as much as the whole rest
of the fingerprint; version 4 makes the pHash thumbnail with Pillow's ``reducing_gap``
(``PHASH_REDUCING_GAP``: a box reduction by an integer factor first, then Lanczos from at least
8 times the thumbnail size, 4 for small images), 0.2-0.7 ms, from the decoded pixels as they
are (reduced or not). So
``Fingerprint.phash == imagehash.phash(thumbnail)`` for that thumbnail, and within a few bits
of ``imagehash.phash(open_for_hashing(f))``: on the 72 corpus photos at 0.3, 2, 12 and 24 MP,
90-92 % identical and never more than 4 bits apart (``tests/test_hashing_fast_path.py``). The
confirmation allows 16 bits. dHash is not approximated: it compares neighbouring grey levels,
and the same shortcut moved up to 40 % of the corpus photos by up to 6 bits.

``Fingerprint.information`` says how many of the 64 dHash bits carry information: a bit whose
two neighbouring thumbnail pixels differ by less than ``DECIDED_LEVELS`` grey levels is decided
by noise (fog, sky, a flat wall), and a hash that is nearly all ones or all zeros (a smooth
left-to-right gradient) sits in the densest corner of the hash space. The measure is
``min(decided bits, 2 x min(ones, zeros))``, 0..64; flagging refuses images below
``MODERATION_MIN_INFORMATION``.

``fingerprint_variants`` gives the fingerprints of every variant of an image
(``variants.VARIANTS``: the 8 flips and quarter turns, and a few crops of the upright image),
from one decode: a flag stores all of them, so a mirrored, rotated or cropped copy is looked up
by its own dHash like any other copy (pipeline version 4 added the crops).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, Any

import numpy as np
import scipy.fftpack
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from PIL import Image, UnidentifiedImageError

from moderation.framing import SEARCH_SIDE, picture_box
from moderation.variants import UPLOAD_CUTS, VARIANTS, Variant, crop_box

# Bump when anything below changes the hash of the same file; stored fingerprints record the
# version that made them, and `manage.py reindex` recomputes the ones that are older.
# 2: JPEG fast path (reduced DCT decode for large JPEGs, see the module docstring).
# 3: pHash confirmation hash and information measure beside the dHash; flags store the
#    fingerprints of all 8 orientations.
# 4: flags also store crop variants (``variants.VARIANTS``), and the pHash thumbnail comes from
#    a box-reduced image (PHASH_REDUCING_GAP, see above). One bump for both: neither shipped
#    on its own.
# 5: flags also store the caption band (``variants.BAND``).
PIPELINE_VERSION = 5

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
# Pillow opens a multi-picture JPEG (phone cameras' MPO: a JPEG plus depth or preview frames)
# as "MPO" even when only "JPEG" is allowed; its first frame is an ordinary JPEG.
_JPEG_FORMATS = ("JPEG", "MPO")

HASH_BITS = 64
_UNSIGNED_MAX = (1 << HASH_BITS) - 1
HASH_SIZE = 8  # imagehash.dhash's default: a 9x8 grey thumbnail, 8x8 comparisons
PHASH_THUMBNAIL = 32  # imagehash.phash's default: 32x32 grey thumbnail, top-left 8x8 of its DCT
# Pillow's reducing_gap for the pHash thumbnail (pipeline version 4), against the exact
# thumbnail's pHash on the 72 corpus photos (identical / max bits / time):
#   gap 8:  0.3 MP 90 % / 2 / 0.53 ms   2 MP 90 % / 2 / 0.69 ms   12-24 MP 92 % / 4
#   gap 4:  0.3 MP 90 % / 4 / 0.18 ms   2 MP 89 % / 4 / 0.43 ms   24 MP 83 % / 4
# (gaps 2-3 and bilinear/bicubic were cheaper and further off). Small images take gap 4: as
# close, and at 0.3 MP the 0.35 ms decide whether the fingerprint beats the seed's dHash alone.
PHASH_REDUCING_GAP = 8.0
PHASH_SMALL_REDUCING_GAP = 4.0
PHASH_SMALL_SIDE = 1024  # shorter side (as decoded) below which an image counts as small

# A dHash bit is "decided" when its two thumbnail pixels differ by at least this many grey
# levels (of 255); smaller differences flip with a re-encode or a brightness change. Chosen on
# the corpus: near-flat photos (a brick wall seen from afar) have ~12 such bits, every other
# photo 37 or more.
DECIDED_LEVELS = 3

# The fast path reduces a JPEG by 4 or 2 only while the reduced image keeps this many pixels on
# its shorter side. Measured on the 72 corpus photos at 0.3-24 MP (tests/test_hashing_fast_path.py
# checks the result): up to 700, 2 MP photos go through 1/2 scale and one lands 3 bits away; from
# 720 everything up to ~2 MP is decoded at full size, 12 MP and 24 MP agree on 96-97 % of the
# files and never by more than 2 bits; larger values only send more 12 MP photos through the
# slower 1/2 instead of 1/4.
HASH_DECODE_MIN_SIDE = 720
_HASH_DRAFT_SCALES = (4, 2)  # 8 is biased, see the module docstring

# Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; a warning is not a refusal, so
# make it one everywhere in this process. `_decode` also checks Pillow's limit itself, because a
# warnings filter is process state that other code (or a test runner) may reset.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


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


# --- Errors ------------------------------------------------------------------------------
# One message per failure, for people; the code is for tests and logs.

ERROR_MESSAGES = {
    "empty": _("The file is empty."),
    "too_large": _("The file is too large (at most %(limit)s MB)."),
    "unsupported_format": _("Upload a JPEG, PNG, GIF or WebP image."),
    "too_many_pixels": _("The image is too large (at most %(limit)s megapixels)."),
    "too_small": _("The image is too small (at least %(limit)s pixels on each side)."),
    "corrupt": _("The image file is damaged or incomplete."),
    "too_many_frames": _("The animation has too many frames (at most %(limit)s at this size)."),
    "too_much_metadata": _(
        "The file carries too much data besides the picture (at most %(limit)s KB). "
        "Save it again as a plain image."
    ),
}


def _error(code: str, **params: Any) -> ValidationError:
    return ValidationError(ERROR_MESSAGES[code], code=code, params=params or None)


# --- Opening -----------------------------------------------------------------------------


def _file_size(file: Any) -> int:
    size = getattr(file, "size", None)
    if isinstance(size, int):
        return size
    if isinstance(file, (str, os.PathLike)):
        return os.path.getsize(file)
    position = file.tell()
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(position)
    return size


def _rewind(file: Any) -> None:
    if hasattr(file, "seek"):
        file.seek(0)


@dataclass(frozen=True)
class _Decoded:
    """A prepared image, possibly decoded at reduced scale.

    ``cells_x[i]`` is how many full-size columns column ``i`` of ``image`` stands for (all 1
    for a full-size decode; ``scale`` or fewer for a reduced JPEG), likewise ``cells_y`` for
    rows, both in the upright orientation of ``image``.
    """

    image: Image.Image
    scale: int
    cells_x: np.ndarray
    cells_y: np.ndarray
    format: str | None = None  # as Pillow identified the file: "JPEG", "PNG", ...

    @property
    def full_size(self) -> tuple[int, int]:
        return int(self.cells_x.sum()), int(self.cells_y.sum())


def _decode(
    file: Any,
    *,
    max_bytes: int | None,
    max_pixels: int | None,
    min_side: int | None,
    choose_scale: Callable[[int, int], int] | None = None,
    draft_mode: str | None = None,
) -> _Decoded:
    """Check the limits, decode and prepare; the shared core of every way of opening a file.

    ``choose_scale(width, height) -> 1, 2, 4 or 8`` picks a DCT-domain reduction for a JPEG
    from its declared size (None: always full size); ``draft_mode`` ``"L"`` decodes luma only.
    """
    max_bytes = settings.MODERATION_MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    max_pixels = settings.MODERATION_MAX_PIXELS if max_pixels is None else max_pixels
    min_side = settings.MODERATION_MIN_SIDE if min_side is None else min_side
    if Image.MAX_IMAGE_PIXELS:
        max_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS)

    def too_many_pixels() -> ValidationError:
        return _error("too_many_pixels", limit=f"{max_pixels / 1_000_000:g}")

    size = _file_size(file)
    if size == 0:
        raise _error("empty")
    if size > max_bytes:
        raise _error("too_large", limit=round(max_bytes / 1_000_000, 1))

    with ExitStack() as stack:
        source = _source(file, stack)
        try:
            img = Image.open(source, formats=ALLOWED_FORMATS)
        except UnidentifiedImageError as e:
            raise _error("unsupported_format") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise too_many_pixels() from e
        except Exception as e:  # noqa: BLE001 - a hostile header can break any parser path
            raise _error("corrupt") from e

        width, height = img.size
        if width * height > max_pixels:
            raise too_many_pixels()
        if min(width, height) < min_side:
            raise _error("too_small", limit=min_side)

        try:
            scale = 1
            if choose_scale is not None and img.format in _JPEG_FORMATS:
                scale = _draft(img, choose_scale(width, height), draft_mode)
            img.load()  # first frame only for GIF/animated WebP/MPO
            method = _orientation(img)
            prepared = _prepare(img, method)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise too_many_pixels() from e
        except Exception as e:  # noqa: BLE001 - truncated/corrupt data raises many types
            raise _error("corrupt") from e
        # After load: a PNG's text chunks may follow its pixels. The bytes are bounded by the
        # upload limit anyway; this refuses files that are mostly something else.
        max_metadata = settings.MODERATION_MAX_METADATA_BYTES
        if _metadata_bytes(img) > max_metadata:
            raise _error("too_much_metadata", limit=max_metadata // 1024)

    cells_x = _cells(width, img.size[0], scale)
    cells_y = _cells(height, img.size[1], scale)
    if method is not None:
        cells_x, cells_y = _TRANSPOSE_CELLS[method](cells_x, cells_y)
    return _Decoded(prepared, scale, cells_x, cells_y, img.format)


def _source(file: Any, stack: ExitStack) -> Any:
    """A readable binary file for ``file``, rewound now and again when ``stack`` closes."""
    if isinstance(file, (str, os.PathLike)):
        # Opened here, so it is closed here (Pillow keeps a GIF's file open after load).
        source = stack.enter_context(open(file, "rb"))
    elif hasattr(file, "open") and not hasattr(file, "read"):
        source = file.open("rb")
    else:
        source = file
    stack.callback(_rewind, file)
    _rewind(source)
    return source


def _metadata_bytes(img: Image.Image) -> int:
    """Bytes of metadata (EXIF, XMP, ICC, comments, PNG text...) Pillow read with the picture."""
    if img.format in _JPEG_FORMATS:
        # Every APPn and COM segment, including repeats that ``info`` keeps only the last of.
        return sum(len(payload) for _, payload in getattr(img, "applist", []))
    return sum(len(v) for v in img.info.values() if isinstance(v, (bytes, str)))


def _draft(img: Image.Image, scale: int, mode: str | None) -> int:
    """Ask libjpeg for a 1/scale decode (not yet loaded); return the scale it will deliver.

    ``mode`` ``"L"`` also asks for luma only (a YCbCr JPEG's Y channel, no chroma upsampling or
    colour conversion), which is what dHash looks at, at any scale.
    """
    if scale == 1 and mode is None:
        return 1
    width, height = img.size
    configured = img.draft(mode, (width // scale, height // scale))
    if configured is None:  # not a single-scan layout Pillow can scale: full size
        return 1
    _, box = configured
    actual = round(width / box[2])
    expected = (-(-width // actual), -(-height // actual))
    if img.size != expected:
        raise ValueError(f"JPEG draft gave {img.size}, expected {expected}")
    return actual


def _cells(full: int, reduced: int, scale: int) -> np.ndarray:
    """Full-size pixels per reduced pixel along one side: scale each, the last one what is left."""
    cells = np.full(reduced, scale, dtype=np.int64)
    cells[-1] = full - scale * (reduced - 1)
    return cells


# How each EXIF transpose moves the per-column/per-row cell counts (checked against Pillow's
# own transposes in tests/test_hashing_fast_path.py).
_TRANSPOSE_CELLS = {
    Image.Transpose.FLIP_LEFT_RIGHT: lambda cx, cy: (cx[::-1], cy),
    Image.Transpose.FLIP_TOP_BOTTOM: lambda cx, cy: (cx, cy[::-1]),
    Image.Transpose.ROTATE_180: lambda cx, cy: (cx[::-1], cy[::-1]),
    Image.Transpose.ROTATE_90: lambda cx, cy: (cy, cx[::-1]),
    Image.Transpose.ROTATE_270: lambda cx, cy: (cy[::-1], cx),
    Image.Transpose.TRANSPOSE: lambda cx, cy: (cy, cx),
    Image.Transpose.TRANSVERSE: lambda cx, cy: (cy[::-1], cx[::-1]),
}

# EXIF orientation -> the transpose that makes the pixels upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(img: Image.Image) -> Image.Transpose | None:
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - broken EXIF is not a reason to refuse the pixels
        return None
    # Absent, 1 (upright), 0 or nonsense (including non-integers): leave the pixels as they are.
    return _ORIENTATION.get(orientation) if isinstance(orientation, int) else None


def _prepare(img: Image.Image, method: Image.Transpose | None) -> Image.Image:
    """Normalise what the camera or editor left in the file, so copies hash alike."""
    if method is not None:
        img = img.transpose(method)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow clips 16-bit samples when converting to 8 bits, which turns most 16-bit
        # images white (an all-zero dHash). Scale instead.
        samples = np.asarray(img, dtype=np.uint32)
        return Image.fromarray((samples >> 8).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("L", "RGB"):
        return img
    return img.convert("RGB")


def open_image(
    file: str | os.PathLike | IO[bytes] | Any,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    min_side: int | None = None,
    max_side: int | None = None,
) -> Image.Image:
    """Open, check and decode an image; return it upright, opaque, 8-bit RGB or L.

    Limits default to the MODERATION_* settings. Raises ``ValidationError`` (codes in
    ``ERROR_MESSAGES``) for anything that is not an acceptable image. The file is rewound
    afterwards so the caller can store it.

    ``max_side``: the caller wants at most this many pixels on the longer side; the image is
    shrunk to fit, to the size and with the filter ``Image.thumbnail`` would use on the full
    decode. A JPEG is then decoded at 1/2, 1/4 or 1/8 scale in the DCT domain as long as its
    longer side keeps at least ``max_side`` pixels, so the shrink never starts from fewer pixels
    than it produces. Default: full size, untouched.
    """
    decoded = _decode(
        file,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        min_side=min_side,
        choose_scale=None if max_side is None else _storage_scale(max_side),
    )
    img = decoded.image
    target = None if max_side is None else _thumbnail_size(decoded.full_size, max_side)
    if target is not None:
        # The box leaves out what a partial edge block of a reduced decode adds beyond the
        # real picture, so a reduced decode keeps the full decode's framing and aspect.
        s = decoded.scale
        box = (
            float(s - decoded.cells_x[0]) / s,
            float(s - decoded.cells_y[0]) / s,
            img.width - float(s - decoded.cells_x[-1]) / s,
            img.height - float(s - decoded.cells_y[-1]) / s,
        )
        img = img.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=2.0)
    return img


def _thumbnail_size(size: tuple[int, int], max_side: int) -> tuple[int, int] | None:
    """The size ``Image.thumbnail((max_side, max_side))`` gives an image of ``size``, or None."""
    width, height = size
    if max_side >= width and max_side >= height:
        return None
    aspect = width / height

    def round_aspect(number: float, key: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if 1 >= aspect:  # x / y >= aspect with x == y == max_side
        return round_aspect(max_side * aspect, key=lambda n: abs(aspect - n / max_side)), max_side
    return max_side, round_aspect(
        max_side / aspect, key=lambda n: 0 if n == 0 else abs(aspect - max_side / n)
    )


def _storage_scale(max_side: int) -> Callable[[int, int], int]:
    def choose(width: int, height: int) -> int:
        longer = max(width, height)
        return next((s for s in (8, 4, 2) if longer // s >= max_side), 1)

    return choose


def _hash_scale(width: int, height: int) -> int:
    shorter = min(width, height)
    return next((s for s in _HASH_DRAFT_SCALES if shorter // s >= HASH_DECODE_MIN_SIDE), 1)


def _decode_for_hashing(file: Any, **limits: Any) -> _Decoded:
    limits = {"max_bytes": None, "max_pixels": None, "min_side": None, **limits}
    return _decode(file, **limits, choose_scale=_hash_scale, draft_mode="L")


def open_for_hashing(file: str | os.PathLike | IO[bytes] | Any, **limits: Any) -> Image.Image:
    """The prepared image ``fingerprint`` hashes, at full size: dHash(it) == fingerprint(file).

    For a JPEG decoded at reduced scale that is the reduced luma expanded back to full size,
    each sample repeated over the pixels it stands for. ``fingerprint`` never builds it (that is
    the point of the fast path); this is for tests and for looking at what was hashed.
    Same checks, errors and keyword limits as ``open_image``.
    """
    decoded = _decode_for_hashing(file, **limits)
    if decoded.scale == 1:
        return decoded.image
    pixels = np.asarray(decoded.image)
    pixels = np.repeat(np.repeat(pixels, decoded.cells_y, axis=0), decoded.cells_x, axis=1)
    return Image.fromarray(pixels, mode=decoded.image.mode)


def image_format(file: Any) -> str | None:
    """The allowed format (``"JPEG"``, ``"PNG"``...) the file's header declares, else None.

    Reads the header only; used to give a stored copy an honest extension. A multi-picture
    JPEG (MPO) is a JPEG.
    """
    try:
        _rewind(file)
        with Image.open(file, formats=ALLOWED_FORMATS) as img:
            return "JPEG" if img.format in _JPEG_FORMATS else img.format
    except Exception:  # noqa: BLE001 - unknown or broken: the caller picks a neutral name
        return None
    finally:
        _rewind(file)


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
    """The 32x32 grey thumbnail the pHash is taken from (pipeline version 4, see the module
    docstring): Pillow's Lanczos after a box reduction, not the exact resize."""
    small = min(grey.size) < PHASH_SMALL_SIDE
    return np.asarray(
        grey.resize(
            (PHASH_THUMBNAIL, PHASH_THUMBNAIL),
            Image.Resampling.LANCZOS,
            reducing_gap=PHASH_SMALL_REDUCING_GAP if small else PHASH_REDUCING_GAP,
        )
    )


def fingerprint_image(img: Image.Image) -> Fingerprint:
    """The fingerprint of an already prepared image (see ``open_image``).

    ``hex == str(imagehash.dhash(img))`` and
    ``phash == int(str(imagehash.phash(Image.fromarray(phash_thumbnail(grey)))), 16)``.
    """
    grey = img if img.mode == "L" else img.convert("L")
    # The same bytes as Pillow's resize, from BLAS products, in about half the time (9x8 from
    # random grey images, best of 5: 2 MP 1.7 against 4.0 ms, 12 MP 15.6/23.0, 24 MP 31/45).
    ones_x = np.ones(grey.width, dtype=np.int64)
    ones_y = np.ones(grey.height, dtype=np.int64)
    dthumb = _lanczos_thumbnail_of_expanded(
        np.asarray(grey), ones_x, ones_y, (HASH_SIZE + 1, HASH_SIZE)
    )
    return _fingerprint_of_thumbnails(dthumb, phash_thumbnail(grey))


def _cropped(decoded: _Decoded, box: tuple[int, int, int, int]) -> _Decoded:
    """``decoded`` cut to ``box`` (left, upper, right, lower in full-size pixels, upright).

    A reduced decode can only be cut between its samples: the left and top edges move out to the
    start of the sample they fall in, the right and bottom edges in to the end of the last whole
    sample, at most ``scale - 1`` full-size pixels either way -- nothing the thumbnails of a
    5-15% crop can see. At full size the cut is exact.
    """

    def kept(cells: np.ndarray, start: int, stop: int) -> slice:
        ends = np.cumsum(cells)  # where each sample's pixels end, in full-size pixels
        # Skip the samples that end by `start`; keep those that end by `stop`.
        first = int(np.searchsorted(ends, start, side="right"))
        return slice(first, int(np.searchsorted(ends, stop, side="right")))

    columns = kept(decoded.cells_x, box[0], box[2])
    rows = kept(decoded.cells_y, box[1], box[3])
    image = decoded.image.crop((columns.start, rows.start, columns.stop, rows.stop))
    return _Decoded(image, decoded.scale, decoded.cells_x[columns], decoded.cells_y[rows])


def _fingerprint_decoded(decoded: _Decoded, variant: Variant = VARIANTS[0]) -> Fingerprint:
    """The fingerprint of one variant of a decoded image (cut, then turned), at any scale."""
    if variant.is_crop:
        decoded = _cropped(decoded, crop_box(decoded.full_size, variant.cut))
    transpose = variant.transpose
    grey = decoded.image if decoded.image.mode == "L" else decoded.image.convert("L")
    if transpose is not None:
        grey = grey.transpose(transpose)
    if decoded.scale == 1:
        return fingerprint_image(grey)
    cells_x, cells_y = decoded.cells_x, decoded.cells_y
    if transpose is not None:
        cells_x, cells_y = _TRANSPOSE_CELLS[transpose](cells_x, cells_y)
    # The dHash thumbnail imagehash would make of the expanded image, computed from the reduced
    # one; the pHash thumbnail straight from the reduced pixels.
    return _fingerprint_of_thumbnails(
        _lanczos_thumbnail_of_expanded(
            np.asarray(grey), cells_x, cells_y, (HASH_SIZE + 1, HASH_SIZE)
        ),
        phash_thumbnail(grey),
    )


def fingerprint(file: str | os.PathLike | IO[bytes] | Any) -> Fingerprint:
    """Open ``file`` safely and fingerprint it. Raises ``ValidationError`` on bad input."""
    return _fingerprint_decoded(_decode_for_hashing(file))


def fingerprint_variants(file: str | os.PathLike | IO[bytes] | Any) -> list[Fingerprint]:
    """The fingerprints of every variant of ``file``, indexed as ``variants.VARIANTS``.

    Item 0 equals ``fingerprint(file)``; an orientation's is the fingerprint of the image
    transposed by it, a crop's that of the upright image cut by it (decoded once; at full size
    ``== str(imagehash.dhash(img.crop(box)))``). Same checks and errors as ``fingerprint``.
    Flagging and reindexing call this; an upload never does (it needs only its own).
    """
    decoded = _decode_for_hashing(file)
    return [_fingerprint_decoded(decoded, variant) for variant in VARIANTS]


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
        """The cuts and the framed picture packed for storage (``pack_probes``): what a
        registered model stores beside its image's own fingerprint, so that sweeps compare a
        stored image as the upload path compared it."""
        rows = [(number, fp.signed, fp.phash_signed) for number, fp in self.cuts.items()]
        if self.inner is not None:
            rows.append((None, self.inner.signed, self.inner.phash_signed))
        return pack_probes(rows)


# A stored probe is three little-endian signed 64-bit integers: the variant number (-1, for the
# framed picture, compared with every variant), the signed dHash and the signed pHash. Packed
# bytes rather than JSON so that the impact preview reads 100k images' probes with one
# ``np.frombuffer`` instead of 100k ``json.loads`` (measured: 0.33 s of a 0.6 s preview).
PROBE_DTYPE = np.dtype("<i8")
# The variant number stored for the framed picture: it is compared with every variant.
EVERY_VARIANT = -1


def pack_probes(rows: Iterable[tuple[int | None, int, int | None]]) -> bytes:
    """``(variant number or None for the framed picture, signed dHash, signed pHash)`` rows
    packed for storage. A probe always has a pHash (the current pipeline computes one)."""
    flat = [
        value
        for number, dhash, phash in rows
        for value in (EVERY_VARIANT if number is None else number, dhash, phash or 0)
    ]
    return np.array(flat, PROBE_DTYPE).tobytes()


def unpack_probes(data: bytes | memoryview | None) -> np.ndarray:
    """Stored probe bytes as an int64 array of shape (n, 3); (0, 3) for none."""
    return np.frombuffer(bytes(data or b""), PROBE_DTYPE).reshape(-1, 3)


def probes_from_bytes(
    data: bytes | memoryview | None, pipeline_version: int = PIPELINE_VERSION
) -> tuple[dict[int, Fingerprint], Fingerprint | None]:
    """``(cuts, inner)`` from stored probe bytes, as ``BannedIndex.check`` takes them;
    ({}, None) for none."""
    cuts: dict[int, Fingerprint] = {}
    inner = None
    for number, dhash, phash in unpack_probes(data).tolist():
        fp = Fingerprint.from_signed(dhash, pipeline_version, phash=phash)
        if number == EVERY_VARIANT:
            inner = fp
        else:
            cuts[number] = fp
    return cuts, inner


def _picture_in_frame(decoded: _Decoded, grey: Image.Image) -> Variant | None:
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
    """The fingerprint of every frame an upload holds (first frame first), the first frame's
    cuts and the picture inside its frame, from one decode of the file.

    A banned picture can hide as any frame of an animation (GIF, APNG, WebP), so the upload
    validator compares them all. A still image (or a multi-picture JPEG, whose extra pictures
    are previews and depth maps) has one frame, and the file is not looked at again. See
    ``further_frame_fingerprints`` for the bounds on animations.
    """
    decoded = _decode_for_hashing(file)  # every check on the file itself happens here
    first = _fingerprint_decoded(decoded)
    cuts = {number: _fingerprint_decoded(decoded, VARIANTS[number]) for number in UPLOAD_CUTS}
    grey = decoded.image if decoded.image.mode == "L" else decoded.image.convert("L")
    framed = _picture_in_frame(decoded, grey)
    inner = None if framed is None else _fingerprint_decoded(decoded, framed)
    if decoded.format in _JPEG_FORMATS:
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
    one frame header past the limit.
    """
    max_frames = settings.MODERATION_MAX_FRAMES if max_frames is None else max_frames
    fingerprints: list[Fingerprint] = []
    with ExitStack() as stack:
        source = _source(file, stack)
        try:
            img = Image.open(source, formats=ALLOWED_FORMATS)
            if img.format in _JPEG_FORMATS or not getattr(img, "is_animated", False):
                return fingerprints
            width, height = img.size
            allowed = max(1, min(max_frames, settings.MODERATION_MAX_PIXELS // (width * height)))
            method = _orientation(img)
            for index in range(1, allowed + 1):
                try:
                    img.seek(index)
                except EOFError:
                    return fingerprints
                if index == allowed:
                    break  # one frame too many: refuse without decoding it
                fingerprints.append(fingerprint_image(_prepare(img, method)))
        except Exception as e:  # noqa: BLE001 - a broken later frame is a broken file
            raise _error("corrupt") from e
    raise _error("too_many_frames", limit=allowed)


# --- Pillow's Lanczos resize, on an image given as reduced pixels + cell counts -------------
#
# imagehash.dhash(img) is img.convert("L").resize((9, 8), LANCZOS): Pillow's two-pass
# fixed-point resampler (src/libImaging/Resample.c). When img is a reduced image expanded
# (every sample repeated over cells_x[i] x cells_y[j] pixels), each pass's sum over the
# repeated pixels is the sample times the sum of their integer weights, so summing Pillow's
# integer weights per cell reproduces every intermediate and final byte exactly, from the
# reduced pixels. The emulation is pinned to Pillow by tests (test_hashing_fast_path.py): a
# Pillow release that changes its resampler fails them instead of drifting silently.

_PRECISION_BITS = 32 - 8 - 2  # Resample.c: 8-bit results, 2 bits of headroom
_LANCZOS_SUPPORT = 3.0


def _sinc(x: np.ndarray) -> np.ndarray:
    out = np.ones_like(x)
    nonzero = x != 0.0
    scaled = x[nonzero] * np.pi
    out[nonzero] = np.sin(scaled) / scaled
    return out


def _lanczos(x: np.ndarray) -> np.ndarray:
    inside = (x >= -_LANCZOS_SUPPORT) & (x < _LANCZOS_SUPPORT)
    out = np.zeros_like(x)
    out[inside] = _sinc(x[inside]) * _sinc(x[inside] / 3)
    return out


@lru_cache(maxsize=64)
def _pillow_weights(in_size: int, out_size: int) -> np.ndarray:
    """Resample.c's precompute_coeffs + normalize_coeffs_8bpc: out_size x in_size int64."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    # C's (int) casts truncate toward zero, as astype does.
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(max(int(xmax.max()), 0))
    used = taps[None, :] < xmax[:, None]
    positions = (xmin[:, None] + taps[None, :]).astype(np.float64)
    k = np.where(used, _lanczos((positions - centers[:, None] + 0.5) * (1.0 / filterscale)), 0.0)
    # C sums left to right; cumsum does too, and the zeros past xmax leave the total alone.
    totals = np.cumsum(k, axis=1)[:, -1:]
    k = np.divide(k, totals, out=k.copy(), where=totals != 0.0)
    fixed = k * (1 << _PRECISION_BITS)
    fixed = np.where(k < 0, fixed - 0.5, fixed + 0.5).astype(np.int64)
    weights = np.zeros((out_size, in_size), dtype=np.int64)
    rows, cols = np.nonzero(used)
    weights[rows, xmin[rows] + cols] = fixed[rows, cols]
    return weights


def _cell_weights(cells: np.ndarray, out_size: int) -> np.ndarray:
    """Pillow's integer weights over the expanded side, summed per cell; as float64."""
    weights = _pillow_weights(int(cells.sum()), out_size)
    starts = np.concatenate(([0], np.cumsum(cells)[:-1]))
    # float64 holds every partial sum exactly: |sample x weight| < 2^8 * 2^23, a few thousand terms.
    return np.add.reduceat(weights, starts, axis=1).astype(np.float64)


def _clip8(sums: np.ndarray) -> np.ndarray:
    """Resample.c's rounding (start at one half) and clip8 (floor shift, clamp to 0..255)."""
    shifted = np.floor((sums + (1 << (_PRECISION_BITS - 1))) / (1 << _PRECISION_BITS))
    return np.clip(shifted, 0, 255)


# OpenBLAS runs a product on one thread up to m*n*k = 65536 * 4 (interface/gemm.c); above it
# wakes its threads, whose spin-waiting makes a 2 ms product take 2-70 ms on a busy machine
# (measured here with two cores). Column blocks under the limit keep it at ~2.5 ms, steadily.
_SINGLE_THREAD_PRODUCT = 65536 * 4


def _narrow_matmul(small: np.ndarray, big: np.ndarray) -> np.ndarray:
    """``small @ big`` for a few-row ``small``, in column blocks that stay single-threaded.

    ``big`` may be the uint8 pixels (or a transposed view of them): each block is converted to
    float64 on its own, so the copy stays in the cache instead of a whole-image float64 array
    going through memory (12 MP: 15.6 against 24.5 ms; exactly the same sums).
    """
    step = max(1, _SINGLE_THREAD_PRODUCT // (small.shape[0] * small.shape[1]))
    out = np.empty((small.shape[0], big.shape[1]))
    for start in range(0, big.shape[1], step):
        block = big[:, start : start + step].astype(np.float64)
        np.matmul(small, block, out=out[:, start : start + step])
    return out


def _lanczos_thumbnail_of_expanded(
    pixels: np.ndarray, cells_x: np.ndarray, cells_y: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """``Image.fromarray(expanded).resize(size, LANCZOS)`` as uint8, without ``expanded``."""
    width, height = int(cells_x.sum()), int(cells_y.sum())
    horizontal = _cell_weights(cells_x, size[0])  # size[0] x reduced width
    vertical = _cell_weights(cells_y, size[1])  # size[1] x reduced height
    # Pillow 13 runs the horizontal pass first unless the height shrinks more than twice as
    # much as the width (ImagingResampleInner); the rounding in between depends on the order.
    if 2 * (width - size[0]) >= height - size[1]:
        across = _clip8(_narrow_matmul(horizontal, pixels.T))  # size[0] x reduced height
        out = _clip8(vertical @ across.T)
    else:
        down = _clip8(_narrow_matmul(vertical, pixels))  # size[1] x reduced width
        out = _clip8(horizontal @ down.T).T
    return out.astype(np.uint8)
