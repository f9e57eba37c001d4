"""Framed copies: a banned picture padded, letterboxed or screenshotted is found by the
picture inside its frame (``moderation.framing``), compared like the whole upload.

Images are drawn in code (``tests.images``) and go through the real upload path.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image, ImageDraw, ImageOps

from moderation import matching, registry, screening
from moderation.framing import picture_box
from moderation.hashing import check_fingerprints
from moderation.models import AuditEvent, RefusedUpload
from moderation.probes import unpack_probes
from moderation.screening import upload_fingerprints
from moderation.variants import UPLOAD_CUTS
from profiles.models import Profile
from tests import images
from tests.helpers import ban, post_photo

GENERIC = "This image can&#x27;t be used as a profile photo."


def padded(img: Image.Image, fraction: float, fill="white") -> Image.Image:
    border = (round(img.width * fraction), round(img.height * fraction))
    return ImageOps.expand(img.convert("RGB"), border=border, fill=fill)


def screenshot(img: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A phone screenshot of ``img``: a dark status bar with the time, blank space, the picture
    at 90% of the width, two lines of text; and where the picture is."""
    width = img.width
    canvas = Image.new("RGB", (width, round(width * 16 / 9)), "white")
    draw = ImageDraw.Draw(canvas)
    bar = width // 14
    draw.rectangle([0, 0, width, bar], fill=(20, 20, 20))
    draw.text((bar // 2, bar // 5), "12:34", fill="white")
    shown = img.convert("RGB").resize((width * 9 // 10, img.height * 9 // 10))
    left, top = (width - shown.width) // 2, bar * 2
    canvas.paste(shown, (left, top))
    for i, line in enumerate(("liked by someone and 1,024 others", "look at this")):
        draw.text((width // 20, top + shown.height + bar // 2 + i * bar), line, fill=(30, 30, 30))
    return canvas, (left, top, left + shown.width, top + shown.height)


def grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"))


@pytest.fixture
def alice_client(client, user):
    client.force_login(user)
    return client


# --- finding the picture ------------------------------------------------------------------------


def test_a_photo_with_detail_to_its_edges_has_no_frame():
    # Camera noise alone makes every row of a real photo busy (2 of the 72 corpus photos have
    # flat rows: a test chart on a blank page and a flat-shaded render).
    noise = np.random.default_rng(70).normal(0, 12, (480, 640))
    photo = np.clip(grey(images.photo(70)) + noise, 0, 255).astype(np.uint8)
    assert picture_box(photo) is None


def test_the_picture_inside_a_pad_of_any_shade_is_found_to_the_pixel():
    picture = images.photo(71, (400, 300))
    for fill in ("white", "black", (120, 60, 200)):
        assert picture_box(grey(padded(picture, 0.1, fill))) == (40, 30, 440, 330)


def test_margins_thinner_than_two_percent_are_no_frame():
    assert picture_box(grey(padded(images.photo(72, (400, 300)), 0.01))) is None


def test_the_picture_in_a_screenshot_is_found_between_the_status_bar_and_the_text():
    shot, where = screenshot(images.photo(73, (640, 480)))
    box = picture_box(grey(shot))
    assert box is not None
    assert all(abs(a - b) <= 1 for a, b in zip(box, where)), (box, where)


def test_a_picture_too_small_for_its_frame_is_not_taken_for_the_picture():
    canvas = Image.new("RGB", (800, 800), "white")
    canvas.paste(images.photo(74, (120, 90)), (340, 355))  # 15% of the width
    assert picture_box(grey(canvas)) is None


# --- the upload path ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make", [lambda img: padded(img, 0.15), lambda img: padded(img, 0.1, "black"),
             lambda img: screenshot(img)[0]],
    ids=["padded white 15%", "letterboxed black 10%", "phone screenshot"],
)
def test_a_framed_copy_of_a_flagged_picture_is_refused_by_the_picture_inside(
    alice_client, user, make
):
    original = images.photo(75, (800, 600))
    flagged = ban(original)
    data = images.encode(make(original), "JPEG", quality=90)
    checked = upload_fingerprints(io.BytesIO(data))  # as the profile form checks it
    # The premise: the whole upload and its cuts are no match; the picture inside is.
    assert screening.check(checked.frames[0]).decision == matching.PASS
    assert checked.inner is not None

    response = post_photo(alice_client, data, "framed.jpg")

    assert response.status_code == 200 and GENERIC in response.content.decode()
    assert not Profile.objects.get(user=user).photo
    refused = RefusedUpload.objects.get()
    assert refused.nearest_id == flagged.pk
    assert refused.dhash == checked.inner.signed  # recorded with the picture inside
    assert refused.found_by == "frame"
    assert refused.variant_name.endswith("the picture inside the upload's frame")


@pytest.mark.django_db
def test_a_framed_photo_of_something_else_is_accepted(alice_client, user):
    for seed in range(76, 80):
        ban(images.photo(seed, (800, 600)))

    response = post_photo(alice_client, padded(images.photo(81, (800, 600)), 0.15))

    assert response.status_code == 302 and Profile.objects.get(user=user).photo
    assert not RefusedUpload.objects.exists()


# --- stored photos: the sweep after a flag, reindex -------------------------------------------


@pytest.mark.django_db
def test_a_stored_photo_keeps_the_probes_it_was_checked_with(make_profile):
    profile = make_profile("alice", padded(images.photo(82, (800, 600)), 0.15))

    with profile.photo.open("rb") as fh:
        expected = check_fingerprints(fh).probe_bytes()
    assert bytes(profile.photo_probes) == expected
    assert unpack_probes(expected)[:, 0].tolist() == [*UPLOAD_CUTS, -1]  # cuts, framed picture


@pytest.mark.django_db
def test_a_framed_photo_stored_before_its_picture_was_flagged_is_taken_down_by_the_sweep(
    make_profile, django_capture_on_commit_callbacks
):
    original = images.photo(83, (800, 600))
    profile = make_profile("alice", padded(original, 0.15))
    stored = registry.target_for(profile).fingerprint(profile)

    with django_capture_on_commit_callbacks(execute=True):
        flagged = ban(original)

    assert screening.check(stored).decision == matching.PASS  # the whole photo alone: no match
    profile.refresh_from_db()
    assert not profile.photo and bytes(profile.photo_probes) == b""
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert takedown.fingerprint == flagged


@pytest.mark.django_db
def test_reindex_fills_in_the_probes_of_a_photo_stored_without_them(make_profile):
    profile = make_profile("alice", padded(images.photo(84, (800, 600)), 0.15))
    expected = bytes(profile.photo_probes)
    Profile.objects.filter(pk=profile.pk).update(photo_probes=b"")  # as before pipeline 5

    call_command("reindex", "--no-sweep", stdout=io.StringIO())

    profile.refresh_from_db()
    assert bytes(profile.photo_probes) == expected and expected
