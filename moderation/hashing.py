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
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import IO, Any

import imagehash
import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageOps, UnidentifiedImageError

# Bump when anything below changes the hash of the same file; stored fingerprints record the
# version that made them, and `manage.py reindex` recomputes the ones that are older.
PIPELINE_VERSION = 1

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")

HASH_BITS = 64
_UNSIGNED_MAX = (1 << HASH_BITS) - 1

# Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; a warning is not a refusal, so
# make it one everywhere in this process. Our own pixel limit normally refuses first.
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
    """A 64-bit dHash and the pipeline version that computed it."""

    dhash: int
    pipeline_version: int = PIPELINE_VERSION

    def __post_init__(self) -> None:
        if not 0 <= self.dhash <= _UNSIGNED_MAX:
            raise ValueError(f"dhash must be an unsigned 64-bit integer, got {self.dhash}")

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
    def from_signed(cls, value: int, pipeline_version: int = PIPELINE_VERSION) -> Fingerprint:
        return cls(to_unsigned(value), pipeline_version)

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


def open_image(
    file: str | os.PathLike | IO[bytes] | Any,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    min_side: int | None = None,
) -> Image.Image:
    """Open, check and decode an image; return it upright, opaque, 8-bit RGB or L.

    Limits default to the MODERATION_* settings. Raises ``ValidationError`` (codes in
    ``ERROR_MESSAGES``) for anything that is not an acceptable image. The file is rewound
    afterwards so the caller can store it.
    """
    max_bytes = settings.MODERATION_MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    max_pixels = settings.MODERATION_MAX_PIXELS if max_pixels is None else max_pixels
    min_side = settings.MODERATION_MIN_SIDE if min_side is None else min_side

    size = _file_size(file)
    if size == 0:
        raise _error("empty")
    if size > max_bytes:
        raise _error("too_large", limit=round(max_bytes / 1_000_000, 1))

    source = file
    if hasattr(file, "open") and not hasattr(file, "read"):
        source = file.open("rb")
    _rewind(source)
    try:
        try:
            img = Image.open(source, formats=ALLOWED_FORMATS)
        except UnidentifiedImageError as e:
            raise _error("unsupported_format") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _error("too_many_pixels", limit=max_pixels // 1_000_000) from e
        except Exception as e:  # noqa: BLE001 - a hostile header can break any parser path
            raise _error("corrupt") from e

        width, height = img.size
        if width * height > max_pixels:
            raise _error("too_many_pixels", limit=max_pixels // 1_000_000)
        if min(width, height) < min_side:
            raise _error("too_small", limit=min_side)

        try:
            img.load()  # first frame only for GIF/animated WebP
            prepared = _prepare(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _error("too_many_pixels", limit=max_pixels // 1_000_000) from e
        except Exception as e:  # noqa: BLE001 - truncated/corrupt data raises many types
            raise _error("corrupt") from e
    finally:
        _rewind(file)
    return prepared


def _prepare(img: Image.Image) -> Image.Image:
    """Normalise what the camera or editor left in the file, so copies hash alike."""
    img = _apply_orientation(img)
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


def _apply_orientation(img: Image.Image) -> Image.Image:
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - broken EXIF is not a reason to refuse the pixels
        return img
    if orientation not in range(2, 9):
        return img  # absent, 1 (upright), 0 or nonsense: leave the pixels as they are
    return ImageOps.exif_transpose(img)


def image_format(file: Any) -> str | None:
    """The allowed format (``"JPEG"``, ``"PNG"``...) the file's header declares, else None.

    Reads the header only; used to give a stored copy an honest extension.
    """
    try:
        _rewind(file)
        with Image.open(file, formats=ALLOWED_FORMATS) as img:
            return img.format
    except Exception:  # noqa: BLE001 - unknown or broken: the caller picks a neutral name
        return None
    finally:
        _rewind(file)


# --- Hashing -----------------------------------------------------------------------------


def fingerprint_image(img: Image.Image) -> Fingerprint:
    """The 64-bit dHash of an already prepared image (see ``open_image``)."""
    return Fingerprint(int(str(imagehash.dhash(img)), 16))


def fingerprint(file: str | os.PathLike | IO[bytes] | Any) -> Fingerprint:
    """Open ``file`` safely and fingerprint it. Raises ``ValidationError`` on bad input."""
    return fingerprint_image(open_image(file))
