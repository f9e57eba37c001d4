"""What ``moderation.hashing`` promises, one property per test, on images drawn in code.

No database: hashing is pure. Limits come from the MODERATION_* settings, overridden with
pytest-django's ``settings`` fixture where a test needs a small one. The JPEG fast path (big
JPEGs decoded at reduced scale) has its own file, test_hashing_fast_path.py; what hashing
refuses, and how early, is in test_hashing_refusals.py.
"""

from __future__ import annotations

import gc
import io
import warnings

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw

from moderation.decoding import image_format, open_for_hashing, open_image
from moderation.hashing import (
    PIPELINE_VERSION,
    Fingerprint,
    fingerprint,
    fingerprint_image,
    hamming,
    to_signed,
    to_unsigned,
)
from tests import images
from tests.helpers import as_upload, encoded, error_code

# --- helpers -----------------------------------------------------------------------------


# --- the Fingerprint value ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_hex_is_imagehash_str_for_the_same_pixels(seed, mode):
    img = images.photo(seed).convert(mode)
    assert fingerprint_image(img).hex == str(imagehash.dhash(img))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_hex_of_a_file_is_imagehash_str_of_its_prepared_pixels(fmt):
    data = images.encode(images.photo(4), fmt)
    prepared = open_for_hashing(io.BytesIO(data))
    assert fingerprint(io.BytesIO(data)).hex == str(imagehash.dhash(prepared))


def test_plain_rgb_png_hashes_like_the_seed_pipeline():
    data = encoded(images.photo(5), "PNG")
    assert fingerprint(io.BytesIO(data)).hex == str(imagehash.dhash(Image.open(io.BytesIO(data))))


def test_hex_is_sixteen_lowercase_digits_with_leading_zeros():
    assert Fingerprint(0).hex == "0000000000000000"
    assert Fingerprint(1).hex == "0000000000000001"
    assert Fingerprint(0xABCDEF).hex == "0000000000abcdef"
    assert Fingerprint((1 << 64) - 1).hex == "ffffffffffffffff"
    assert str(Fingerprint(0xABCDEF)) == "0000000000abcdef"


def test_new_fingerprints_carry_the_current_pipeline_version():
    # 2: the JPEG fast path can move hashes of big JPEGs; 3: pHash and orientations added;
    # 4: flags store crop variants, and the pHash thumbnail comes from a box-reduced image;
    # 5: flags store the caption band; 6: flags store a verification signal; 7: flags store
    # the PDQ of each orientation; 8: PDQ from at most 768 px instead of 1024.
    assert PIPELINE_VERSION == 8
    assert fingerprint(io.BytesIO(encoded(images.photo(1)))).pipeline_version == PIPELINE_VERSION
    assert Fingerprint(5, pipeline_version=1).pipeline_version == 1


SIGNED_EDGES = [
    (0, 0),
    (1, 1),
    (2**63 - 1, 2**63 - 1),
    (2**63, -(2**63)),
    (2**63 + 1, -(2**63) + 1),
    (2**64 - 1, -1),
]


@pytest.mark.parametrize(("unsigned", "signed"), SIGNED_EDGES)
def test_signed_and_unsigned_round_trip_at_the_edges(unsigned, signed):
    assert to_signed(unsigned) == signed
    assert to_unsigned(signed) == unsigned
    assert Fingerprint(unsigned).signed == signed
    assert Fingerprint.from_signed(signed).dhash == unsigned
    assert Fingerprint.from_signed(Fingerprint(unsigned).signed) == Fingerprint(unsigned)


@pytest.mark.parametrize("value", [-1, 2**64, 2**70])
def test_to_signed_refuses_values_outside_unsigned_64_bits(value):
    with pytest.raises(ValueError):
        to_signed(value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64 - 1])
def test_to_unsigned_refuses_values_outside_signed_64_bits(value):
    with pytest.raises(ValueError):
        to_unsigned(value)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_fingerprint_refuses_values_outside_unsigned_64_bits(value):
    with pytest.raises(ValueError):
        Fingerprint(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0000000000000000", 0),
        ("8000000000000000", 2**63),
        ("ffffffffffffffff", 2**64 - 1),
        ("FFFFFFFFFFFFFFFF", 2**64 - 1),
        ("  00000000000000ab\n", 0xAB),
    ],
)
def test_from_hex_reads_sixteen_hex_digits(text, value):
    fp = Fingerprint.from_hex(text)
    assert fp.dhash == value
    assert Fingerprint.from_hex(fp.hex) == fp


def test_from_hex_reads_what_imagehash_prints():
    h = imagehash.dhash(images.photo(7))
    assert Fingerprint.from_hex(str(h)).hex == str(h)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "123",
        "000000000000000",  # 15 digits
        "00000000000000000",  # 17 digits
        "0x00000000000000",  # 16 characters with a prefix
        "0x0000000000000000",
        "-000000000000001",
        "+fffffffffffffff",
        "ffff ffff ffff ff",
        "000000000000000g",
        "００００００００００００００００",  # full-width digits: int() would take them
        "0000_00000000000",  # int() would take the underscore
    ],
)
def test_from_hex_refuses_anything_else(text):
    with pytest.raises(ValueError):
        Fingerprint.from_hex(text)


def test_from_hex_keeps_the_given_pipeline_version():
    assert Fingerprint.from_hex("00000000000000ff", pipeline_version=1).pipeline_version == 1


def test_distance_counts_differing_bits():
    assert Fingerprint(0).distance(Fingerprint(2**64 - 1)) == 64
    assert Fingerprint(0b1011).distance(Fingerprint(0b0001)) == 2
    assert hamming(2**63, 0) == 1


# --- awkward but legitimate images -------------------------------------------------------

# The transpose that turns an upright picture into what a camera stores with this EXIF
# orientation (the inverse of what the viewer applies).
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def with_orientation(img: Image.Image, orientation: int, fmt: str, **params) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(img, fmt, exif=exif, **params)


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_exif_rotated_copy_hashes_like_the_upright_image(orientation):
    upright = images.photo(10)
    stored = upright.transpose(STORED_AS[orientation])
    data = with_orientation(stored, orientation, "PNG")
    assert fingerprint(io.BytesIO(data)) == fingerprint_image(upright)
    assert open_image(io.BytesIO(data)).size == upright.size


def test_exif_rotated_jpeg_hashes_like_the_upright_jpeg():
    upright = images.photo(11)
    rotated = with_orientation(upright.transpose(Image.Transpose.ROTATE_90), 6, "JPEG", quality=90)
    plain = fingerprint(io.BytesIO(images.encode(upright, "JPEG", quality=90)))
    ignoring_exif = fingerprint_image(Image.open(io.BytesIO(rotated)).convert("RGB"))
    assert hamming(fingerprint(io.BytesIO(rotated)).dhash, plain.dhash) <= 2
    assert hamming(ignoring_exif.dhash, plain.dhash) > 10  # what the seed pipeline saw


@pytest.mark.parametrize("orientation", [0, 1, 9, 255, 65535])
def test_absent_or_nonsense_orientation_leaves_the_pixels_alone(orientation):
    img = images.photo(12)
    assert fingerprint(io.BytesIO(with_orientation(img, orientation, "PNG"))) == (
        fingerprint_image(img)
    )


def _with_holes(img: Image.Image) -> Image.Image:
    """RGBA: a transparent band whose hidden colour is loud, and a half-transparent corner."""
    rgba = img.convert("RGBA")
    alpha = Image.new("L", img.size, 255)
    draw = ImageDraw.Draw(alpha)
    w, h = img.size
    draw.rectangle([0, h // 3, w, 2 * h // 3], fill=0)
    draw.rectangle([0, 0, w // 3, h // 3], fill=128)
    rgba.putalpha(alpha)
    rgba.paste((255, 0, 255, 0), (0, h // 3, w, 2 * h // 3))
    return rgba


def test_transparency_is_composited_on_white():
    rgba = _with_holes(images.photo(13))
    flattened = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    assert fingerprint(io.BytesIO(encoded(rgba, "PNG"))) == fingerprint_image(flattened)
    assert fingerprint(io.BytesIO(encoded(rgba, "WEBP", lossless=True))) == (
        fingerprint_image(flattened)
    )


def test_colour_hidden_under_transparent_pixels_does_not_count():
    rgba = _with_holes(images.photo(14))
    other = rgba.copy()
    other.paste((0, 255, 0, 0), (0, rgba.height // 3, rgba.width, 2 * rgba.height // 3))
    assert np.array_equal(np.asarray(rgba)[..., 3], np.asarray(other)[..., 3])
    assert fingerprint(io.BytesIO(encoded(rgba))) == fingerprint(io.BytesIO(encoded(other)))


def test_palette_png_with_a_transparent_index_is_composited_on_white():
    img = images.photo(15).quantize(64)
    img.info["transparency"] = 0
    data = encoded(img, "PNG", transparency=0)
    reopened = Image.open(io.BytesIO(data))
    assert reopened.mode == "P" and "transparency" in reopened.info
    flattened = Image.alpha_composite(
        Image.new("RGBA", img.size, "white"), reopened.convert("RGBA")
    ).convert("RGB")
    assert fingerprint(io.BytesIO(data)) == fingerprint_image(flattened)


def test_sixteen_bit_greyscale_hashes_like_its_eight_bit_version():
    grey = images.photo(16).convert("L")
    wide = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)  # 0..255 -> 0..65535
    data = encoded(wide, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    fp = fingerprint(io.BytesIO(data))
    assert fp.dhash != 0  # Pillow's clipping conversion makes it all white
    assert fp == fingerprint_image(grey)


def test_animated_gif_hashes_its_first_frame():
    first, second = images.photo(17), images.photo(18)
    data = encoded(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    reversed_order = encoded(second, "GIF", save_all=True, append_images=[first], duration=100)
    frame0 = Image.open(io.BytesIO(data))
    assert frame0.n_frames == 2
    fp = fingerprint(io.BytesIO(data))
    assert fp == fingerprint_image(frame0.convert("RGB"))
    assert fp != fingerprint(io.BytesIO(reversed_order))
    assert hamming(fp.dhash, fingerprint_image(first).dhash) <= 4  # palette quantisation


def test_cmyk_jpeg_is_accepted():
    img = images.photo(19)
    data = images.encode(img.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    fp = fingerprint(io.BytesIO(data))
    assert fp == fingerprint_image(Image.open(io.BytesIO(data)).convert("RGB"))
    assert hamming(fp.dhash, fingerprint_image(img).dhash) <= 4
    assert open_image(io.BytesIO(data)).mode == "RGB"


def test_greyscale_jpeg_is_accepted():
    grey = images.photo(20).convert("L")
    data = images.encode(grey, "JPEG", quality=95)
    assert hamming(fingerprint(io.BytesIO(data)).dhash, fingerprint_image(grey).dhash) <= 2


def test_prepared_image_is_upright_opaque_eight_bit():
    rgba = _with_holes(images.photo(21)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    prepared = open_image(io.BytesIO(encoded(rgba, "PNG", exif=exif)))
    assert prepared.mode == "RGB"
    assert prepared.size == (rgba.height, rgba.width)


# --- the file afterwards -----------------------------------------------------------------


def test_file_is_rewound_after_fingerprinting():
    data = images.encode(images.photo(22), "JPEG")
    upload = as_upload(data)
    upload.seek(17)
    fingerprint(upload)
    assert upload.tell() == 0
    assert upload.read() == data

    stream = io.BytesIO(data)
    stream.seek(100)
    fingerprint(stream)
    assert stream.tell() == 0


def test_file_is_rewound_after_a_decoding_error_too():
    data = images.encode(images.photo(22), "JPEG")[:3000]
    stream = io.BytesIO(data)
    assert error_code(lambda: fingerprint(stream)) == "corrupt"
    assert stream.tell() == 0


def test_image_format_reads_the_header_and_rewinds():
    stream = io.BytesIO(encoded(images.photo(1), "GIF"))
    stream.seek(5)
    assert image_format(stream) == "GIF"
    assert stream.tell() == 0


def test_paths_are_opened_and_closed(tmp_path):
    """A GIF keeps its file open after load; given a path, hashing closes what it opened."""
    path = tmp_path / "anim.gif"
    path.write_bytes(
        encoded(images.photo(1), "GIF", save_all=True, append_images=[images.photo(2)])
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fp = fingerprint(path)
        assert fingerprint(str(path)) == fp
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# --- open_image for storing --------------------------------------------------------------


def test_open_image_max_side_shrinks_like_thumbnail():
    img = images.photo(23, (900, 500))
    data = encoded(img, "PNG")
    expected = img.copy()
    expected.thumbnail((300, 300), Image.Resampling.LANCZOS)
    shrunk = open_image(io.BytesIO(data), max_side=300)
    assert shrunk.size == expected.size == (300, 167)
    assert np.array_equal(np.asarray(shrunk), np.asarray(expected))


def test_open_image_max_side_leaves_smaller_images_alone():
    img = images.photo(24, (300, 200))
    shrunk = open_image(io.BytesIO(encoded(img, "PNG")), max_side=300)
    assert np.array_equal(np.asarray(shrunk), np.asarray(img))


def test_open_image_max_side_applies_orientation_first():
    upright = images.photo(25, (900, 500))
    data = with_orientation(upright.transpose(Image.Transpose.ROTATE_90), 6, "PNG")
    assert open_image(io.BytesIO(data), max_side=300).size == (300, 167)


def test_hashing_does_not_depend_on_the_storage_shrink():
    data = encoded(images.photo(26, (900, 500)), "PNG")
    before = fingerprint(io.BytesIO(data))
    open_image(io.BytesIO(data), max_side=100)
    assert fingerprint(io.BytesIO(data)) == before
