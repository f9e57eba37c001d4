"""Hostile and awkward uploads through the real profile form.

Every bad file gets a form error with a code, never a 500, and writes nothing: no file in media,
no change to the profile row. Bombs, tiny images and oversized files are refused from their
header or their declared size, before any pixel is decoded (spied, and measured). Awkward but
legitimate images are stored as a clean re-encoded JPEG; a banned picture in disguise is still
refused. Every file is made in code (tests/hostile.py).
"""

from __future__ import annotations

import io
import time
import tracemalloc

import numpy as np
import PIL.EpsImagePlugin
import PIL.Image
import PIL.ImageFile
import PIL.PsdImagePlugin
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image, ImageDraw

from moderation import flagging
from moderation.hashing import fingerprint, fingerprint_image, hamming
from moderation.models import FlaggedFingerprint, RefusedUpload
from profiles.forms import ProfileForm
from profiles.models import Profile
from profiles.services import profile_for
from tests import hostile, images

pytestmark = pytest.mark.django_db

GENERIC = "This image can&#x27;t be used as a profile photo."


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def alice_client(client, user):
    profile_for(user=user)  # the row exists before the upload, so "unchanged" means something
    client.force_login(user)
    return client


def post_file(client, data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg"):
    upload = SimpleUploadedFile(name, data, content_type)
    return client.post(reverse("profile-edit"), {"display_name": "Alice", "photo": upload})


def photo_error_codes(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return [e.code for e in response.context["form"].errors.as_data().get("photo", [])]


def profile_row(user) -> list[dict]:
    return list(Profile.objects.filter(user=user).values())


def stored_bytes(user) -> bytes:
    profile = Profile.objects.get(user=user)
    with profile.photo.open("rb") as fh:
        return fh.read()


@pytest.fixture
def decode_spy(monkeypatch):
    """Every pixel decode (ImageFile.load) is recorded with the image size, then allowed."""
    calls: list[tuple[int, int]] = []
    real = PIL.ImageFile.ImageFile.load

    def load(self, *args, **kwargs):
        calls.append(self.size)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", load)
    return calls


@pytest.fixture
def no_foreign_parsers(monkeypatch):
    """EPS (Ghostscript) and PSD must never even be parsed, let alone rendered."""

    def refuse(*args, **kwargs):
        raise AssertionError("a non-allowlisted format parser ran")

    monkeypatch.setattr(PIL.EpsImagePlugin.EpsImageFile, "_open", refuse)
    monkeypatch.setattr(PIL.EpsImagePlugin, "Ghostscript", refuse)
    monkeypatch.setattr(PIL.PsdImagePlugin.PsdImageFile, "_open", refuse)


# --- item 1: bad uploads -------------------------------------------------------------------

# name -> (builder, expected error code, when it is refused)
HEADER = True  # from the header or the declared size: no pixel is decoded
DECODED = False  # only decoding shows what is wrong (bounded by the limits above it)

BAD_FILES = {
    "zero-bytes": (lambda: b"", "empty", HEADER),
    "random-bytes": (hostile.random_bytes, "unsupported_format", HEADER),
    "text": (lambda: hostile.TEXT, "unsupported_format", HEADER),
    "html": (lambda: hostile.HTML, "unsupported_format", HEADER),
    "svg-with-script": (lambda: hostile.SVG, "unsupported_format", HEADER),
    "php": (lambda: hostile.PHP, "unsupported_format", HEADER),
    "pdf": (hostile.pdf, "unsupported_format", HEADER),
    "eps": (hostile.eps, "unsupported_format", HEADER),
    "psd": (hostile.psd, "unsupported_format", HEADER),
    "tiff": (hostile.tiff, "unsupported_format", HEADER),
    "ico": (hostile.ico, "unsupported_format", HEADER),
    "bmp": (hostile.bmp, "unsupported_format", HEADER),
    "jpeg-truncated": (lambda: hostile.truncated(hostile.jpeg()), "corrupt", DECODED),
    "png-truncated": (lambda: hostile.truncated(hostile.png()), "corrupt", DECODED),
    "jpeg-broken-huffman": (hostile.jpeg_broken_huffman, "corrupt", DECODED),
    "jpeg-garbage-scan": (hostile.jpeg_garbage_scan, "corrupt", DECODED),
    "png-bad-crc": (hostile.png_bad_crc, "corrupt", DECODED),
    "png-garbage-idat": (hostile.png_garbage_idat, "corrupt", DECODED),
    "png-bomb-12000x12000": (
        lambda: hostile.png_declaring(12000, 12000),
        "too_many_pixels",
        HEADER,
    ),
    "png-bomb-just-over": (lambda: hostile.png_declaring(8000, 8000), "too_many_pixels", HEADER),
    "gif-bomb-20000x20000": (
        lambda: hostile.gif_declaring(20000, 20000),
        "too_many_pixels",
        HEADER,
    ),
    "gif-bomb-just-over": (lambda: hostile.gif_declaring(8000, 8000), "too_many_pixels", HEADER),
    "jpeg-bomb-65000x65000": (
        lambda: hostile.jpeg_declaring(65000, 65000),
        "too_many_pixels",
        HEADER,
    ),
    "jpeg-bomb-just-over": (lambda: hostile.jpeg_declaring(8000, 8000), "too_many_pixels", HEADER),
    "webp-bomb-16384x16384": (
        lambda: hostile.webp_declaring(16384, 16384),
        "too_many_pixels",
        HEADER,
    ),
    "webp-bomb-just-over": (lambda: hostile.webp_declaring(8000, 8000), "too_many_pixels", HEADER),
    "tiff-bomb-named-jpg": (
        lambda: hostile.tiff_declaring(50000, 50000),
        "unsupported_format",
        HEADER,
    ),
    "png-10mb-text-chunk": (
        lambda: hostile.png_with_text(10_000_000),
        "too_much_metadata",
        DECODED,
    ),
    "png-ztxt-bomb": (
        lambda: hostile.png_with_text(50_000_000, compressed=True),
        "corrupt",
        HEADER,
    ),
    "1x1": (lambda: hostile.encoded(Image.new("RGB", (1, 1)), "PNG"), "too_small", HEADER),
    "1x10000": (lambda: hostile.encoded(Image.new("RGB", (1, 10000)), "PNG"), "too_small", HEADER),
    "gif-1000-frames": (lambda: hostile.animated_gif(1000), "too_many_frames", DECODED),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_upload_gets_a_coded_form_error_and_writes_nothing(
    kind, alice_client, user, media_files, decode_spy, no_foreign_parsers
):
    build, code, from_header = BAD_FILES[kind]
    before = profile_row(user)
    response = post_file(alice_client, build())
    assert photo_error_codes(response) == [code]
    assert media_files() == []
    assert profile_row(user) == before
    if from_header:
        assert decode_spy == [], "refused only after decoding pixels"
    assert RefusedUpload.objects.get().code == code


def test_bad_upload_keeps_the_previous_photo(alice_client, user, media_files):
    assert post_file(alice_client, hostile.jpeg(7)).status_code == 302
    before, files = profile_row(user), media_files()
    for kind in ("jpeg-truncated", "png-bomb-12000x12000", "svg-with-script"):
        assert photo_error_codes(post_file(alice_client, BAD_FILES[kind][0]()))
    assert profile_row(user) == before
    assert media_files() == files


def test_animation_with_too_many_frames_is_refused_after_a_bounded_number(
    alice_client, settings, decode_spy
):
    settings.MODERATION_MAX_FRAMES = 20
    # CPU time of this thread (the test client runs the view in it), not wall time: that would
    # also count whatever else the machine runs meanwhile, such as the other tests' workers.
    started = time.thread_time()
    response = post_file(alice_client, hostile.animated_gif(1000), "anim.gif", "image/gif")
    elapsed = time.thread_time() - started
    assert photo_error_codes(response) == ["too_many_frames"]
    # The first frame is decoded for the hash, then each frame up to the limit, once each
    # (a GIF decodes frame n-1 when seeking to n): never anywhere near 1000.
    assert len(decode_spy) <= 2 * (settings.MODERATION_MAX_FRAMES + 2)
    assert elapsed < 2.0


def test_animation_frames_share_one_pixel_budget(alice_client, settings):
    """Frames x pixels are bounded too: 40 frames of 1 MP is refused under a 20 MP budget."""
    settings.MODERATION_MAX_PIXELS = 20_000_000
    data = hostile.animated_gif(40, size=(1000, 1000))
    assert photo_error_codes(post_file(alice_client, data, "a.gif")) == ["too_many_frames"]


def test_an_animation_within_the_limits_is_accepted(alice_client, user):
    response = post_file(alice_client, hostile.animated_gif(12, size=(96, 96)), "a.gif")
    assert response.status_code == 302
    with Image.open(io.BytesIO(stored_bytes(user))) as stored:
        assert stored.format == "JPEG"  # a still: the first frame


# --- the byte limit comes before everything ---------------------------------------------


@pytest.fixture
def open_spy(monkeypatch):
    """Any attempt to parse an image at all fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("Image.open was called")

    monkeypatch.setattr(PIL.Image, "open", refuse)


def test_50_mb_jpeg_is_answered_413_before_django_reads_it(
    alice_client, user, media_files, open_spy
):
    data = hostile.jpeg_with_comments(50 * 1024 * 1024)
    response = post_file(alice_client, data)
    assert response.status_code == 413
    assert "too large" in response.content.decode()
    assert media_files() == []
    assert not Profile.objects.get(user=user).photo


def test_50_mb_jpeg_is_refused_by_the_byte_limit_without_being_opened(
    alice_client, settings, media_files, open_spy
):
    """With the request cap out of the way the form itself refuses it from the declared size."""
    settings.MODERATION_MAX_REQUEST_BYTES = 64 * 1024 * 1024
    data = hostile.jpeg_with_comments(50 * 1024 * 1024)
    response = post_file(alice_client, data)
    assert photo_error_codes(response) == ["too_large"]
    assert media_files() == []


def test_just_over_the_byte_limit_is_a_form_error_not_a_413(alice_client, settings, open_spy):
    settings.MODERATION_MAX_UPLOAD_BYTES = 100_000
    data = hostile.jpeg_with_comments(100_001)
    assert photo_error_codes(post_file(alice_client, data)) == ["too_large"]


# --- limits refuse before the work is done: measured ------------------------------------

HEADER_REFUSED = [
    kind for kind, (_, code, header) in BAD_FILES.items() if header and code != "empty"
]


def _validate(user, data: bytes) -> tuple[list[str], int, float, int]:
    """Run the real profile form on ``data``: codes, Pillow images allocated, seconds, peak."""
    profile = Profile.objects.get_or_create(user=user)[0]
    upload = SimpleUploadedFile("photo.jpg", data, "image/jpeg")
    allocated = Image.core.get_stats()["new_count"]
    tracemalloc.start()
    started = time.perf_counter()
    try:
        form = ProfileForm({"display_name": "x"}, {"photo": upload}, instance=profile)
        valid = form.is_valid()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    codes = [] if valid else [e.code for e in form.errors.as_data()["photo"]]
    return codes, Image.core.get_stats()["new_count"] - allocated, elapsed, peak


def test_limits_refuse_bombs_before_any_pixel_memory_is_allocated(user):
    # Control: the same measurement does see a real decode (so a zero below means something).
    big = hostile.encoded(images.photo(1, (3000, 2000)), "PNG", compress_level=1)
    codes, allocated, _, _ = _validate(user, big)
    assert codes == [] and allocated > 0

    for kind in HEADER_REFUSED:
        data = BAD_FILES[kind][0]()
        codes, allocated, elapsed, peak = _validate(user, data)
        assert codes == [BAD_FILES[kind][1]], kind
        # Decoding a 12000x12000 bomb would take ~430 MB and about a second; refusing it takes
        # no image buffer, a few times the file's own size in Python memory, and milliseconds.
        assert allocated == 0, f"{kind}: Pillow allocated {allocated} image(s)"
        # (A zTXt bomb costs Pillow's own 1 MB text cap before it gives up.)
        assert peak < 3 * len(data) + 4_000_000, f"{kind}: peak {peak} bytes"
        assert elapsed < 0.25, f"{kind}: {elapsed:.3f} s"


def test_pixel_limit_is_checked_before_decoding_even_just_over(user, settings):
    """A file declaring one pixel more than the limit is refused without a buffer."""
    settings.MODERATION_MAX_PIXELS = 64 * 48 - 1
    codes, allocated, _, _ = _validate(user, hostile.png(1, (64, 48)))
    assert codes == ["too_many_pixels"] and allocated == 0


# --- item 2: awkward but legitimate --------------------------------------------------------


def _sixteen_bit_png() -> tuple[bytes, Image.Image]:
    eight = images.photo(21).convert("L")
    wide = (np.asarray(eight, dtype=np.uint16) * 257).astype(np.uint16)
    img = Image.fromarray(wide)
    assert img.mode.startswith("I;16")
    return hostile.encoded(img, "PNG"), eight


def _palette_with_transparency() -> tuple[bytes, Image.Image]:
    rgb = images.photo(22)
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=200)
    ImageDraw.Draw(pal).rectangle([0, 0, 200, 480], fill=0)
    pal.info["transparency"] = 0
    data = hostile.encoded(pal, "PNG", transparency=0)
    seen = pal.convert("RGBA")
    white = Image.new("RGBA", seen.size, (255, 255, 255, 255))
    return data, Image.alpha_composite(white, seen).convert("RGB")


def _cmyk_jpeg() -> tuple[bytes, Image.Image]:
    rgb = images.photo(23)
    return hostile.encoded(rgb.convert("CMYK"), "JPEG", quality=95), rgb


AWKWARD = {
    "cmyk-jpeg": _cmyk_jpeg,
    "16-bit-png": _sixteen_bit_png,
    "palette-png-with-transparency": _palette_with_transparency,
    "webp-lossy": lambda: (hostile.webp(24, (640, 480), quality=90), images.photo(24)),
    "webp-lossless": lambda: (hostile.webp(25, (640, 480), lossless=True), images.photo(25)),
    **{
        f"exif-orientation-{o}": (lambda o=o: _nonsense_orientation(o))
        for o in (0, 1, 9, 255, 65535)
    },
}


def _nonsense_orientation(orientation: int) -> tuple[bytes, Image.Image]:
    """0 and values past 8 name no transform: the pixels are shown (and hashed) as stored."""
    data = hostile.with_orientation(images.photo(26), orientation)
    with Image.open(io.BytesIO(data)) as decoded:
        return data, decoded.convert("RGB")


@pytest.mark.parametrize("kind", list(AWKWARD))
def test_awkward_image_is_accepted_stored_as_jpeg_and_fingerprinted_as_seen(
    kind, alice_client, user
):
    data, seen = AWKWARD[kind]()
    response = post_file(alice_client, data, "awkward.img", "application/octet-stream")
    assert response.status_code == 302, response.context["form"].errors
    profile = Profile.objects.get(user=user)
    with Image.open(io.BytesIO(stored_bytes(user))) as stored:
        assert stored.format == "JPEG" and stored.mode == "RGB"
    stored_fp = profile.photo_dhash & 0xFFFF_FFFF_FFFF_FFFF
    assert stored_fp not in (0, 0xFFFF_FFFF_FFFF_FFFF)  # e.g. a 16-bit PNG gone all white
    assert hamming(stored_fp, fingerprint_image(seen).dhash) <= 3


PAYLOADS = {
    "jpeg-comment": hostile.jpeg_with_comment_payload,
    "jpeg-exif": hostile.jpeg_with_exif_payload,
    "jpeg-trailing-bytes": hostile.jpeg_with_trailing_payload,
    "png-text-chunks": hostile.png_with_text_payload,
    "gif-comment": hostile.gif_with_comment_payload,
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_payload_hidden_in_an_image_is_not_in_the_stored_file(kind, alice_client, user):
    data = PAYLOADS[kind]()
    assert hostile.PAYLOAD in data
    assert post_file(alice_client, data).status_code == 302
    stored = stored_bytes(user)
    assert hostile.PAYLOAD not in stored
    for fragment in (b"<script", b"<?php", b"alert(", b"system("):
        assert fragment not in stored
    with Image.open(io.BytesIO(stored)) as img:
        assert img.format == "JPEG"
        assert "comment" not in img.info and "exif" not in img.info
        assert not img.getexif()


HOSTILE_NAMES = [
    "../../../../etc/passwd.jpg",
    "..\\..\\..\\windows\\system32\\photo.jpg",
    "photo.jpg\x00.php",
    "\u202egpj.php",  # right-to-left override: shows as "php.jpg"
    "x" * 296 + ".jpg",
    "my.photo...tar.gz.php.....jpg",
    "shell.php",
    ".htaccess",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:24]))
def test_hostile_file_name_never_reaches_storage(name, alice_client, user, media_files):
    response = post_file(alice_client, hostile.jpeg(31), name)
    assert response.status_code == 302, response.context["form"].errors
    stored = Profile.objects.get(user=user).photo.name
    assert media_files() == [stored]
    folder, base = stored.split("/")
    assert folder == "photos" and len(base) == len("0123456789abcdef0123456789abcdef.jpg")
    assert base[:32].isalnum() and base.endswith(".jpg")


# --- a banned picture in disguise is still refused ----------------------------------------


def _ban(img: Image.Image) -> FlaggedFingerprint:
    upload = SimpleUploadedFile("banned.png", hostile.encoded(img, "PNG"), "image/png")
    return flagging.flag_image(
        file=upload, reason="test", source=FlaggedFingerprint.Source.COMMAND
    ).fingerprint


def _banned_picture() -> Image.Image:
    """A picture with a white band on its left: what an alpha channel can hide garbage behind."""
    img = images.photo(41)
    ImageDraw.Draw(img).rectangle([0, 0, 210, 480], fill=(255, 255, 255))
    return img


def _rotated_by_exif(banned: Image.Image, orientation: int, transpose) -> bytes:
    """Pixels stored turned; the EXIF tag turns them back upright for every viewer."""
    return hostile.with_orientation(banned.transpose(transpose), orientation, "JPEG")


def _behind_alpha(banned: Image.Image) -> bytes:
    """The white band is transparent, with another picture's pixels under it."""
    rgba = banned.convert("RGBA")
    junk = images.photo(99).convert("RGBA")
    junk.putalpha(0)
    rgba.paste(junk.crop((0, 0, 211, 480)), (0, 0))
    return hostile.encoded(rgba, "PNG")


def _gif_frame(banned: Image.Image) -> bytes:
    return hostile.animated_gif(6, size=banned.size, banned_at=3, banned=banned)


def _webp_frame(banned: Image.Image) -> bytes:
    others = [images.photo(seed) for seed in (51, 52, 53)]
    return hostile.animated_webp([others[0], others[1], banned, others[2]])


DISGUISES = {
    "exif-rotated-90": lambda b: _rotated_by_exif(b, 6, Image.Transpose.ROTATE_90),
    "exif-rotated-270": lambda b: _rotated_by_exif(b, 8, Image.Transpose.ROTATE_270),
    "exif-rotated-180": lambda b: _rotated_by_exif(b, 3, Image.Transpose.ROTATE_180),
    "exif-mirrored": lambda b: _rotated_by_exif(b, 2, Image.Transpose.FLIP_LEFT_RIGHT),
    "behind-an-alpha-channel": _behind_alpha,
    "frame-4-of-a-gif": _gif_frame,
    "frame-3-of-an-animated-webp": _webp_frame,
}


@pytest.mark.parametrize("kind", list(DISGUISES))
def test_banned_picture_in_disguise_is_refused(kind, alice_client, user, media_files):
    banned = _banned_picture()
    flagged = _ban(banned)
    data = DISGUISES[kind](banned)
    # The disguise works on a naive pipeline: the file's first picture, as stored, is far away.
    with Image.open(io.BytesIO(data)) as raw:
        raw.seek(0)
        naive = fingerprint_image(raw.convert("RGB"))
    assert hamming(naive.dhash, flagged.fingerprint.dhash) > 6, "not a disguise"

    response = post_file(alice_client, data)
    assert GENERIC in response.content.decode()
    assert photo_error_codes(response) == ["banned_image"]
    assert media_files() == []
    refused = RefusedUpload.objects.get()
    assert refused.nearest == flagged and refused.distance is not None


def test_a_still_copy_hashes_like_its_banned_original():
    """Sanity for the disguises above: the banned picture itself is what the ban holds."""
    banned = _banned_picture()
    fp = fingerprint(io.BytesIO(hostile.encoded(banned, "PNG")))
    assert fp == fingerprint_image(banned)
