"""What ``moderation.hashing`` refuses, and how early: only JPEG, PNG, GIF and WebP judged by
content; byte, pixel and size limits checked before any pixel is decoded; damaged files refused
with a clean error code.

No database: hashing is pure. Limits come from the MODERATION_* settings, overridden with
pytest-django's ``settings`` fixture where a test needs a small one. What hashing computes from
the files it accepts is in ``test_hashing.py``.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import PIL.Image
import PIL.ImageFile
import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from moderation.decoding import image_format, open_image
from moderation.hashing import Fingerprint, fingerprint, fingerprint_image, hamming
from tests import images
from tests.helpers import as_upload, encoded, error_code

# --- helpers -----------------------------------------------------------------------------


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR claims ``width`` x ``height`` (CRC fixed, data untouched)."""
    data = bytearray(encoded(images.photo(1, (64, 48)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture
def decode_spy(monkeypatch):
    """Records every attempt to decode pixels (ImageFile.load), and refuses it."""
    calls = []

    def refuse(self, *args, **kwargs):
        calls.append(self.size)
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", refuse)
    return calls


@pytest.fixture
def open_spy(monkeypatch):
    """Records every attempt to even parse a header (Image.open), and refuses it."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the file was opened")

    monkeypatch.setattr(PIL.Image, "open", refuse)
    return calls




# --- only JPEG, PNG, GIF and WebP, judged by content ----------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_allowed_formats_are_accepted_whatever_the_name(fmt):
    data = images.encode(images.photo(2), fmt)
    for name in ("photo.jpg", "photo.png", "photo", "photo.exe"):
        fp = fingerprint(as_upload(data, name, "application/octet-stream"))
        assert fp == fingerprint(io.BytesIO(data))


def test_png_named_jpg_is_a_png():
    data = encoded(images.photo(3), "PNG")
    upload = as_upload(data, "holiday.jpg", "image/jpeg")
    assert fingerprint(upload) == fingerprint_image(images.photo(3))
    assert image_format(upload) == "PNG"


def _eps(img):
    return encoded(img.convert("RGB"), "EPS")


def _svg(_):
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="640" '
        b'height="480"><script>alert(document.cookie)</script><rect width="640" '
        b'height="480" fill="red"/></svg>\n'
    )


UNSUPPORTED = {
    "eps": _eps,
    "pdf": lambda img: encoded(img.convert("RGB"), "PDF"),
    "svg": _svg,
    "html": lambda _: b"<!doctype html><html><body><script>alert(1)</script></body></html>",
    "text": lambda _: b"just some text, not an image at all\n" * 20,
    "bmp": lambda img: encoded(img, "BMP"),
    "tiff": lambda img: encoded(img, "TIFF"),
    "ico": lambda img: encoded(img, "ICO"),
    "random": lambda _: np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes(),
}


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED))
def test_other_formats_named_jpg_are_unsupported(kind, monkeypatch):
    # Pillow would hand an EPS to Ghostscript when decoding it; it must not get that far.
    monkeypatch.setattr(
        "PIL.EpsImagePlugin.Ghostscript",
        lambda *a, **k: pytest.fail("Ghostscript was started"),
    )
    data = UNSUPPORTED[kind](images.photo(6))
    upload = as_upload(data, "photo.jpg", "image/jpeg")
    assert error_code(lambda: fingerprint(upload)) == "unsupported_format"
    assert error_code(lambda: open_image(io.BytesIO(data))) == "unsupported_format"
    assert image_format(io.BytesIO(data)) is None


def test_multi_picture_jpeg_is_a_jpeg():
    """Phone cameras write MPO (a JPEG followed by more frames); Pillow calls it "MPO"."""
    first, second = images.photo(8), images.photo(9)
    data = encoded(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert image_format(io.BytesIO(data)) == "JPEG"
    fp = fingerprint(io.BytesIO(data))
    assert fp == fingerprint_image(Image.open(io.BytesIO(data)).convert("RGB"))
    assert hamming(fp.dhash, fingerprint_image(first).dhash) <= 2


# --- limits ------------------------------------------------------------------------------


def test_zero_bytes_is_empty(tmp_path):
    assert error_code(lambda: fingerprint(as_upload(b""))) == "empty"
    assert error_code(lambda: fingerprint(io.BytesIO())) == "empty"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert error_code(lambda: fingerprint(tmp_path / "empty.jpg")) == "empty"


def test_over_the_byte_limit_is_refused_before_it_is_opened(settings, open_spy):
    data = encoded(images.photo(1), "PNG")
    settings.MODERATION_MAX_UPLOAD_BYTES = len(data) - 1
    assert error_code(lambda: fingerprint(as_upload(data))) == "too_large"
    assert error_code(lambda: open_image(io.BytesIO(data))) == "too_large"
    assert open_spy == []


def test_byte_limit_argument_wins_over_the_setting(settings, open_spy):
    data = encoded(images.photo(1), "PNG")
    settings.MODERATION_MAX_UPLOAD_BYTES = 10 * len(data)
    assert error_code(lambda: open_image(io.BytesIO(data), max_bytes=100)) == "too_large"
    assert open_spy == []


def test_exactly_the_byte_limit_is_accepted(settings):
    data = encoded(images.photo(1), "PNG")
    settings.MODERATION_MAX_UPLOAD_BYTES = len(data)
    assert fingerprint(io.BytesIO(data)) == fingerprint_image(images.photo(1))


def test_a_huge_declared_upload_is_refused_without_reading_a_byte(settings):
    """A 50 MB upload: Django knows its size; nothing of it is read or parsed."""

    class Huge:
        name = "huge.jpg"
        size = 50 * 1024 * 1024

        def read(self, *args):
            raise AssertionError("read")

        def seek(self, *args):
            raise AssertionError("seek")

        def tell(self):
            raise AssertionError("tell")

    settings.MODERATION_MAX_UPLOAD_BYTES = 15 * 1024 * 1024
    assert error_code(lambda: fingerprint(Huge())) == "too_large"


@pytest.mark.parametrize("bomb_warning", ["error", "ignore"])
@pytest.mark.parametrize(("width", "height"), [(12_000, 12_000), (20_000, 20_000), (1, 10**8)])
def test_png_declaring_too_many_pixels_is_refused_without_decoding(
    width, height, bomb_warning, decode_spy
):
    """Refused from the header, whether Pillow's DecompressionBombWarning is an error (as the
    hashing module sets it) or silenced (as a test runner or another library may reset it)."""
    data = png_declaring(width, height)
    assert len(data) < 20_000
    with warnings.catch_warnings():
        warnings.simplefilter(bomb_warning, PIL.Image.DecompressionBombWarning)
        assert error_code(lambda: fingerprint(io.BytesIO(data))) == "too_many_pixels"
    assert decode_spy == []


def test_pixel_limit_setting_is_ours_not_only_pillows(settings, decode_spy):
    settings.MODERATION_MAX_PIXELS = 64 * 48 - 1
    data = encoded(images.photo(1, (64, 48)), "PNG")
    assert error_code(lambda: fingerprint(io.BytesIO(data))) == "too_many_pixels"
    assert decode_spy == []


def test_pixel_limit_is_inclusive(settings):
    settings.MODERATION_MAX_PIXELS = 64 * 48
    settings.MODERATION_MIN_SIDE = 8
    img = images.photo(1, (64, 48))
    assert fingerprint(io.BytesIO(encoded(img))) == fingerprint_image(img)


def test_pillows_bomb_limit_holds_even_where_warnings_are_silenced(settings, monkeypatch):
    """Between MAX_IMAGE_PIXELS and twice that Pillow only warns; a reset warnings filter
    (another library, a test runner) must not turn that into acceptance."""
    settings.MODERATION_MAX_PIXELS = 10**9
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 10_000)
    data = encoded(images.photo(1, (150, 100)), "PNG")  # 15 000 pixels: Pillow only warns
    for action in ("ignore", "error"):
        with warnings.catch_warnings():
            warnings.simplefilter(action, PIL.Image.DecompressionBombWarning)
            assert error_code(lambda: fingerprint(io.BytesIO(data))) == "too_many_pixels"


@pytest.mark.parametrize(("width", "height"), [(10, 10), (1, 10_000), (10_000, 1), (31, 200)])
def test_tiny_images_are_too_small(width, height, decode_spy):
    data = encoded(Image.new("RGB", (width, height), (200, 30, 30)), "PNG")
    assert error_code(lambda: fingerprint(io.BytesIO(data))) == "too_small"
    assert decode_spy == []


def test_minimum_side_is_a_setting(settings):
    img = images.photo(1, (64, 48))
    settings.MODERATION_MIN_SIDE = 49
    assert error_code(lambda: fingerprint(io.BytesIO(encoded(img)))) == "too_small"
    settings.MODERATION_MIN_SIDE = 48
    assert fingerprint(io.BytesIO(encoded(img))) == fingerprint_image(img)


# --- damaged files -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(640, 480), (3000, 2000)], ids=["plain", "fast-path"])
def test_truncated_jpeg_is_corrupt(size):
    data = images.encode(images.photo(3, size), "JPEG", quality=90)
    for keep in (0.3, 0.6, 0.95):
        cut = data[: int(len(data) * keep)]
        assert error_code(lambda cut=cut: fingerprint(io.BytesIO(cut))) == "corrupt"


def test_truncated_png_is_corrupt():
    data = encoded(images.photo(3), "PNG")
    assert error_code(lambda: fingerprint(io.BytesIO(data[: len(data) // 2]))) == "corrupt"


@pytest.mark.parametrize("size", [(640, 480), (3000, 2000)], ids=["plain", "fast-path"])
def test_jpeg_with_a_broken_huffman_table_is_corrupt(size):
    data = bytearray(images.encode(images.photo(3, size), "JPEG", quality=90))
    dht = data.index(b"\xff\xc4")
    data[dht + 5 : dht + 21] = bytes([255] * 16)  # code counts no Huffman tree can have
    assert error_code(lambda: fingerprint(io.BytesIO(bytes(data)))) == "corrupt"


@pytest.mark.parametrize("size", [(640, 480), (3000, 2000)], ids=["plain", "fast-path"])
def test_jpeg_with_garbage_in_its_scan_gives_a_hash_or_a_clean_error(size):
    """libjpeg decodes damaged entropy data into damaged pixels; never any other exception."""
    data = images.encode(images.photo(3, size), "JPEG", quality=90)
    rng = np.random.default_rng(1)
    for start in (len(data) // 3, len(data) // 2, len(data) - 3000):
        damaged = bytearray(data)
        damaged[start : start + 2000] = rng.integers(0, 256, 2000, np.uint8).tobytes()
        try:
            assert isinstance(fingerprint(io.BytesIO(bytes(damaged))), Fingerprint)
        except ValidationError as e:
            assert e.code == "corrupt"
