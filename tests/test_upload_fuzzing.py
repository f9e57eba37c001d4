"""Fuzzing the upload path: mutated JPEG, PNG, GIF and WebP files.

Hypothesis mutates small valid files (flipped and overwritten bytes, inserted and deleted runs,
truncation, a patched size field, a duplicated tail) and feeds them to what an upload goes
through: the frame fingerprints the validator compares, the re-encoding that is stored, and the
fingerprint of what is stored. The property: a ``ValidationError`` with a code, or a clean JPEG,
never any other exception. A few examples also go through the real form and view: never a 500.

Bounded for CI (1000 + 100 examples, about 5 s). A longer run, e.g. before a Pillow upgrade (20000
+ 2000 examples took 70 s here and found nothing):

    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_upload_fuzzing.py -q

(``FUZZ_EXAMPLES`` sets the direct test's examples; the form test runs a tenth of them.)
"""

from __future__ import annotations

import io
import os
import struct
from functools import lru_cache

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from PIL import Image

from moderation.decoding import ERROR_MESSAGES
from moderation.screening import stored_as_fingerprints
from profiles.photos import STORED_MAX_SIDE, reencode_photo
from tests import hostile, images

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
FORM_EXAMPLES = max(10, EXAMPLES // 10)
CODES = set(ERROR_MESSAGES) | {"empty", "too_large"}


@lru_cache
def seeds() -> dict[str, bytes]:
    """Small valid files of every allowed kind, stills and animations."""
    small = images.photo(5, (96, 72))
    frames = [images.photo(seed, (64, 48)) for seed in (6, 7, 8)]
    return {
        "jpeg": hostile.encoded(small, "JPEG", quality=80),
        "jpeg-progressive": hostile.encoded(small, "JPEG", progressive=True),
        "jpeg-exif": hostile.with_orientation(small, 6),
        "png": hostile.encoded(small, "PNG"),
        "png-rgba": hostile.encoded(small.convert("RGBA"), "PNG"),
        "png-palette": hostile.encoded(small.convert("P"), "PNG"),
        "gif": hostile.encoded(small, "GIF"),
        "gif-animated": hostile.animated_gif(4, size=(48, 48)),
        "webp": hostile.encoded(small, "WEBP", quality=70),
        "webp-lossless": hostile.encoded(small, "WEBP", lossless=True),
        "webp-animated": hostile.animated_webp(frames),
        "apng": hostile.encoded(frames[0], "PNG", save_all=True, append_images=frames[1:]),
    }


def _apply(data: bytearray, op: tuple) -> bytearray:
    kind, at, arg = op
    at = at % (len(data) + 1)
    if kind == "flip":
        if data:
            data[at % len(data)] ^= 1 << (arg % 8)
    elif kind == "byte":
        if data:
            data[at % len(data)] = arg % 256
    elif kind == "insert":
        data[at:at] = bytes([arg % 256]) * (1 + arg % 64)
    elif kind == "delete":
        del data[at : at + 1 + arg % 256]
    elif kind == "truncate":
        del data[at:]
    elif kind == "size":
        # Overwrite 4 bytes with a big-endian and little-endian "size": where headers keep one.
        data[at : at + 4] = struct.pack(">HH" if arg % 2 else "<HH", arg % 65536, arg % 40000)
    elif kind == "repeat":
        data += data[at:][: 1 + arg % 4096]
    return data


OPS = st.tuples(
    st.sampled_from(["flip", "byte", "insert", "delete", "truncate", "size", "repeat"]),
    st.integers(min_value=0, max_value=1 << 20),
    st.integers(min_value=0, max_value=1 << 20),
)


@st.composite
def mutated_files(draw) -> bytes:
    data = bytearray(seeds()[draw(st.sampled_from(sorted(seeds())))])
    # Mostly near the header, where the parsers make their decisions.
    for op in draw(st.lists(OPS, min_size=1, max_size=6)):
        kind, at, arg = op
        if draw(st.booleans()):
            at = at % 64
        data = _apply(data, (kind, at, arg))
    return bytes(data)


def upload_path(data: bytes) -> bytes:
    """What the site does with an upload, minus the database: re-encode (and fingerprint any
    further animation frames), then fingerprint the clean file that is checked and stored."""
    upload = SimpleUploadedFile("fuzz.jpg", data, "image/jpeg")
    prepared = reencode_photo(upload)
    stored_as_fingerprints(upload, prepared)  # what screening looks up, without the lookup
    prepared.seek(0)
    return prepared.read()


def assert_clean(data: bytes) -> None:
    try:
        stored = upload_path(data)
    except ValidationError as e:
        assert e.code in CODES, e.code
        return
    with Image.open(io.BytesIO(stored)) as img:
        assert img.format == "JPEG" and img.mode == "RGB"
        assert max(img.size) <= STORED_MAX_SIDE


@pytest.mark.parametrize("kind", sorted(seeds()))
def test_every_seed_is_accepted_unmutated(kind):
    upload_path(seeds()[kind])


@fuzz_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_files())
def test_mutated_images_give_a_clean_error_or_a_clean_jpeg(data):
    assert_clean(data)


@pytest.fixture
def fuzz_client(client, user, settings):
    """Set once for the whole run: Hypothesis calls the test many times with the same fixtures
    (and each ``settings.X = ...`` would stack one more override)."""
    settings.MODERATION_UPLOAD_RATE_PER_USER = 0
    settings.MODERATION_UPLOAD_RATE_PER_IP = 0
    client.force_login(user)
    return client


@pytest.mark.django_db
@fuzz_settings(
    max_examples=FORM_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=mutated_files())
def test_mutated_images_through_the_form_never_give_a_500(data, fuzz_client):
    response = fuzz_client.post(
        reverse("profile-edit"),
        {"display_name": "x", "photo": SimpleUploadedFile("f.jpg", data, "image/jpeg")},
    )
    assert response.status_code in (200, 302)
    if response.status_code == 200:
        codes = [e.code for e in response.context["form"].errors.as_data()["photo"]]
        assert codes and set(codes) <= CODES | {"banned_image"}
