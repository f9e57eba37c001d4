"""Open an uploaded image safely, and decode it the way the fingerprint reads it.

Pure functions, no ORM. A file is judged by its content, not its name: only JPEG, PNG, GIF and
WebP are opened (Pillow is never allowed to guess EPS, PSD, TIFF...), the byte and pixel limits
are checked from the header before any pixel is decoded, and anything Pillow cannot decode
becomes a ``ValidationError`` with a code (``ERROR_MESSAGES``) instead of an exception the view
never expected. Limits default to the MODERATION_* settings.

Every way in -- ``open_image`` (to store or look at a file), ``decode_for_hashing`` (what the
fingerprint reads), ``map_further_frames`` (an animation's later frames) -- prepares the pixels
alike, so that copies hash alike: EXIF orientation applied, transparency composited on white,
16-bit samples scaled to 8 bits.

The fingerprint looks only at small grey thumbnails, so for it a JPEG is decoded as luma only
(libjpeg's Y channel: no chroma upsampling, no colour conversion) and, while it stays large
enough (``HASH_DECODE_MIN_SIDE``), at 1/4 or 1/2 scale in the DCT domain (libjpeg's scaled
IDCT): several times faster, in a fraction of the memory. Every other format takes the plain
full-size path. A reduced decode is a ``Decoded``: the reduced pixels and how many full-size
pixels each row and column stands for. What the fingerprint hashes is, exactly, that decode
expanded back to full size -- every sample repeated over the pixels it stands for, the last row
and column of 8x8 blocks usually standing for fewer (``open_for_hashing`` builds it; the
fingerprint never does, see ``moderation.resampling``). Hashing the reduced image as it is would
stretch those partial edge blocks and move the hash; 1/8 scale (a DC-only decode) is biased.
How far the fast path lands from a full decode: docs/fingerprinting.md.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from PIL import Image, UnidentifiedImageError

from moderation.conf import moderation_settings

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
# Pillow opens a multi-picture JPEG (phone cameras' MPO: a JPEG plus depth or preview frames)
# as "MPO" even when only "JPEG" is allowed; its first frame is an ordinary JPEG.
JPEG_FORMATS = ("JPEG", "MPO")

# The fast path reduces a JPEG by 4 or 2 only while the reduced image keeps this many pixels on
# its shorter side: below it the reduced decode strays from the full one by more bits, above it
# more photos go through the slower 1/2 instead of 1/4 (docs/fingerprinting.md;
# tests/test_hashing_fast_path.py checks the agreement on the corpus).
HASH_DECODE_MIN_SIDE = 720
_HASH_DRAFT_SCALES = (4, 2)  # 8 is biased, see the module docstring

# Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; a warning is not a refusal, so
# make it one everywhere in this process. `_decode` also checks Pillow's limit itself, because a
# warnings filter is process state that other code (or a test runner) may reset.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


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
class Decoded:
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

    def cropped(self, box: tuple[int, int, int, int]) -> Decoded:
        """This image cut to ``box`` (left, upper, right, lower in full-size pixels, upright).

        A reduced decode can only be cut between its samples: the left and top edges move out
        to the start of the sample they fall in, the right and bottom edges in to the end of the
        last whole sample, at most ``scale - 1`` full-size pixels either way -- nothing the
        thumbnails of a 5-15% crop can see. At full size the cut is exact.
        """

        rows, columns = self.samples_kept(box)
        image = self.image.crop((columns.start, rows.start, columns.stop, rows.stop))
        return Decoded(image, self.scale, self.cells_x[columns], self.cells_y[rows])

    def samples_kept(self, box: tuple[int, int, int, int]) -> tuple[slice, slice]:
        """The rows and columns of ``image`` that ``cropped(box)`` keeps: cut from an array of
        ``image``, its pixels without a copy."""
        return self.rows_kept(box), _kept(self.cells_x, box[0], box[2])

    def rows_kept(self, box: tuple[int, int, int, int]) -> slice:
        """The rows of ``image`` that ``cropped(box)`` keeps."""
        return _kept(self.cells_y, box[1], box[3])

    def keeps_every_column(self, box: tuple[int, int, int, int]) -> bool:
        """Whether ``cropped(box)`` keeps every column of ``image``."""
        columns = _kept(self.cells_x, box[0], box[2])
        return columns.start == 0 and columns.stop == len(self.cells_x)


def _kept(cells: np.ndarray, start: int, stop: int) -> slice:
    """The samples a cut from ``start`` to ``stop`` (full-size pixels) keeps, on one axis."""
    ends = np.cumsum(cells)  # where each sample's pixels end, in full-size pixels
    # Skip the samples that end by `start`; keep those that end by `stop`.
    first = int(np.searchsorted(ends, start, side="right"))
    return slice(first, int(np.searchsorted(ends, stop, side="right")))


def _decode(
    file: Any,
    *,
    max_bytes: int | None,
    max_pixels: int | None,
    min_side: int | None,
    choose_scale: Callable[[int, int], int] | None = None,
    draft_mode: str | None = None,
) -> Decoded:
    """Check the limits, decode and prepare; the shared core of every way of opening a file.

    ``choose_scale(width, height) -> 1, 2, 4 or 8`` picks a DCT-domain reduction for a JPEG
    from its declared size (None: always full size); ``draft_mode`` ``"L"`` decodes luma only.
    """
    max_bytes = moderation_settings.MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    max_pixels = moderation_settings.MAX_PIXELS if max_pixels is None else max_pixels
    min_side = moderation_settings.MIN_SIDE if min_side is None else min_side
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
            if choose_scale is not None and img.format in JPEG_FORMATS:
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
        max_metadata = moderation_settings.MAX_METADATA_BYTES
        if _metadata_bytes(img) > max_metadata:
            raise _error("too_much_metadata", limit=max_metadata // 1024)

    cells_x = _cells(width, img.size[0], scale)
    cells_y = _cells(height, img.size[1], scale)
    if method is not None:
        cells_x, cells_y = TRANSPOSE_CELLS[method](cells_x, cells_y)
    return Decoded(prepared, scale, cells_x, cells_y, img.format)


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
    if img.format in JPEG_FORMATS:
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


# How each transpose moves the per-column/per-row cell counts (checked against Pillow's own
# transposes in tests/test_hashing_fast_path.py).
TRANSPOSE_CELLS = {
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
    return decoded.image if max_side is None else _shrunk(decoded, max_side)


def _shrunk(decoded: Decoded, max_side: int) -> Image.Image:
    """``decoded`` shrunk to at most ``max_side`` pixels on its longer side, to the size and
    with the filter ``Image.thumbnail`` would use on the full decode (as it is if it fits)."""
    img = decoded.image
    target = _thumbnail_size(decoded.full_size, max_side)
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


def open_to_store(
    file: str | os.PathLike | IO[bytes] | Any,
    *,
    max_side: int,
    least_side: int,
    **limits: Any,
) -> Image.Image:
    """The picture to store: at most ``max_side`` pixels on its longer side, and a JPEG whose
    longer side keeps ``least_side`` pixels at 1/2, 1/4 or 1/8 scale is decoded at the smallest
    such scale and, if that fits ``max_side``, stored as decoded, not resampled.

    ``open_image(max_side=...)`` never decodes below ``max_side`` (it must match the full
    decode shrunk), so a 4032 x 3024 phone photo was decoded whole (12 MP) and shrunk by a
    Lanczos filter over all of it: with the encode, 376-481 ms of CPU here against 70-85 ms
    for its half-scale decode kept as it is (``benchmarks/storage_decode.py``). What is
    stored is between ``least_side`` and ``max_side`` on its longer side for a large JPEG,
    ``max_side`` (or the image's own size) otherwise. Same checks and errors as
    ``open_image``.
    """
    limits = {"max_bytes": None, "max_pixels": None, "min_side": None, **limits}

    def choose(width: int, height: int) -> int:
        longer = max(width, height)
        return next((s for s in (8, 4, 2) if -(-longer // s) >= least_side), 1)

    decoded = _decode(file, **limits, choose_scale=choose)
    if max(decoded.image.size) <= max_side:
        return decoded.image
    return _shrunk(decoded, max_side)


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


def decode_for_hashing(file: Any, **limits: Any) -> Decoded:
    """The prepared image the fingerprint reads: luma only for a JPEG, at reduced scale when it
    is large (see the module docstring). Same checks, errors and keyword limits as
    ``open_image``."""
    limits = {"max_bytes": None, "max_pixels": None, "min_side": None, **limits}
    return _decode(file, **limits, choose_scale=_hash_scale, draft_mode="L")


def open_for_hashing(file: str | os.PathLike | IO[bytes] | Any, **limits: Any) -> Image.Image:
    """The prepared image ``fingerprint`` hashes, at full size: dHash(it) == fingerprint(file).

    For a JPEG decoded at reduced scale that is the reduced luma expanded back to full size,
    each sample repeated over the pixels it stands for. ``fingerprint`` never builds it (that is
    the point of the fast path); this is for tests and for looking at what was hashed.
    Same checks, errors and keyword limits as ``open_image``.
    """
    decoded = decode_for_hashing(file, **limits)
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
            return "JPEG" if img.format in JPEG_FORMATS else img.format
    except Exception:  # noqa: BLE001 - unknown or broken: the caller picks a neutral name
        return None
    finally:
        _rewind(file)


def map_further_frames[T](
    file: str | os.PathLike | IO[bytes] | Any,
    function: Callable[[Image.Image], T],
    *,
    max_frames: int | None = None,
) -> list[T]:
    """``function`` of each prepared frame of an animation after the first ([] for a still
    image, a multi-picture JPEG included: its extra pictures are previews and depth maps).

    For a caller that has already checked and decoded the first frame (or a re-encoding of it):
    this reads only the header of a still image. The work is bounded before it is done: at most
    ``MODERATION_MAX_FRAMES`` frames, and no more than fit in ``MODERATION_MAX_PIXELS`` decoded
    pixels all together; an animation with more is refused (``too_many_frames``) after reading
    one frame header past the limit. Anything that fails on a later frame, ``function``
    included, refuses the file as ``corrupt``. Frames are decoded one at a time.
    """
    max_frames = moderation_settings.MAX_FRAMES if max_frames is None else max_frames
    results: list[T] = []
    with ExitStack() as stack:
        source = _source(file, stack)
        try:
            img = Image.open(source, formats=ALLOWED_FORMATS)
            if img.format in JPEG_FORMATS or not getattr(img, "is_animated", False):
                return results
            width, height = img.size
            allowed = max(1, min(max_frames, moderation_settings.MAX_PIXELS // (width * height)))
            method = _orientation(img)
            for index in range(1, allowed + 1):
                try:
                    img.seek(index)
                except EOFError:
                    return results
                if index == allowed:
                    break  # one frame too many: refuse without decoding it
                results.append(function(_prepare(img, method)))
        except Exception as e:  # noqa: BLE001 - a broken later frame is a broken file
            raise _error("corrupt") from e
    raise _error("too_many_frames", limit=allowed)
