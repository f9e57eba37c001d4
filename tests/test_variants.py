"""Variants, crops: a flag also stores fingerprints of crops of its image (``variants.VARIANTS``),
so a copy with a strip cut off one side, or cut around, is found by its own dHash.

Images are drawn in code (``tests.images``); the crops are made the way people make them
(cut, then saved as a JPEG) and go through the real upload path.
"""

from __future__ import annotations

import io

import imagehash
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from PIL import Image

from moderation import banned_set, exchange, flagging, screening
from moderation.banned_index import KEYS_PER_FLAG
from moderation.decoding import open_for_hashing
from moderation.hashing import (
    PIPELINE_VERSION,
    fingerprint,
    fingerprint_image,
    fingerprint_variants,
)
from moderation.models import (
    BannedSetChange,
    FingerprintVariant,
    FlaggedFingerprint,
    RefusedUpload,
)
from moderation.screening import upload_fingerprints
from moderation.variants import BAND, VARIANTS, crop_box
from profiles.models import Profile
from tests import images
from tests.helpers import ban, post_photo

pytestmark = pytest.mark.django_db

GENERIC = "This image can&#x27;t be used as a profile photo."
CROPS = [number for number, v in enumerate(VARIANTS) if v.is_crop]


def cut_off(img: Image.Image, side: str, fraction: float) -> Image.Image:
    """``img`` with ``fraction`` of its width or height cut off one side."""
    w, h = img.size
    dx, dy = round(w * fraction), round(h * fraction)
    box = {"left": (dx, 0, w, h), "right": (0, 0, w - dx, h),
           "top": (0, dy, w, h), "bottom": (0, 0, w, h - dy)}[side]
    return img.crop(box)


def cut_around(img: Image.Image, fraction: float) -> Image.Image:
    """The centre of ``img``: ``fraction`` of the width and height cut, half on each side."""
    w, h = img.size
    dx, dy = round(w * fraction / 2), round(h * fraction / 2)
    return img.crop((dx, dy, w - dx, h - dy))


def as_uploaded(img: Image.Image) -> Image.Image:
    """What a person uploads after cropping: a JPEG."""
    return Image.open(io.BytesIO(images.encode(img, "JPEG", quality=90))).convert("RGB")


@pytest.fixture
def alice_client(client, user):
    client.force_login(user)
    return client


# --- hashing -----------------------------------------------------------------------------


def test_there_are_crop_variants_after_the_8_orientations_and_each_has_a_label():
    assert [v.is_crop for v in VARIANTS[:8]] == [False] * 8
    assert len(CROPS) >= 4 and CROPS == list(range(8, len(VARIANTS)))
    assert len({v.label for v in VARIANTS}) == len(VARIANTS) == KEYS_PER_FLAG


def test_a_crop_variant_is_the_fingerprint_of_the_cut_image():
    img = images.photo(41)
    variants = fingerprint_variants(images.upload(img, "p.png", "PNG"))
    for number in CROPS:
        cut = img.crop(crop_box(img.size, VARIANTS[number].cut))
        assert variants[number] == fingerprint_image(cut), VARIANTS[number].label
        assert variants[number].hex == str(imagehash.dhash(cut))


def test_a_crop_variant_of_a_big_jpeg_on_the_fast_path_agrees_with_the_full_decode():
    # 3000 x 2000: decoded at 1/2 scale for hashing; the crop is cut on the reduced grid.
    upload = images.upload(images.photo(42, (3000, 2000)), "big.jpg", quality=92)
    variants = fingerprint_variants(upload)
    full = open_for_hashing(upload)
    for number in CROPS:
        cut = full.crop(crop_box(full.size, VARIANTS[number].cut))
        assert (variants[number].dhash ^ int(str(imagehash.dhash(cut)), 16)).bit_count() <= 2


# --- flagging, upload, unflag --------------------------------------------------------------


def test_flagging_stores_every_crop_variant(moderator):
    flagged = ban(images.photo(43), actor=moderator)

    stored = {v.variant: v for v in FingerprintVariant.objects.filter(flagged=flagged)}
    expected = fingerprint_variants(images.upload(images.photo(43), "p.png", "PNG"))
    assert set(CROPS) <= set(stored)
    for number in CROPS:
        assert stored[number].dhash == expected[number].signed
        assert stored[number].phash == expected[number].phash_signed
        assert stored[number].get_variant_display() == VARIANTS[number].label
    assert flagged.pipeline_version == PIPELINE_VERSION


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_a_one_sided_crop_of_a_flagged_image_is_refused_on_upload(alice_client, user, side):
    ban(images.photo(44))
    copy = cut_off(images.photo(44), side, 0.10)

    response = post_photo(alice_client, copy)

    assert GENERIC in response.content.decode()
    assert not Profile.objects.get(user=user).photo
    verdict = screening.check(fingerprint(images.upload(copy)))
    assert VARIANTS[verdict.nearest.variant].is_crop  # found through a crop, not the upright


def test_a_copy_cut_around_is_refused_through_the_centre_variant(alice_client):
    ban(images.photo(45))
    copy = cut_around(images.photo(45), 0.15)

    assert GENERIC in post_photo(alice_client, copy).content.decode()
    verdict = screening.check(fingerprint(images.upload(copy)))
    assert VARIANTS[verdict.nearest.variant].label.startswith("centre")


def test_a_captioned_copy_is_refused_through_the_caption_band_and_recorded_with_its_hash(
    alice_client, user, settings
):
    # Two lines of meme text at the top and at the bottom change every dHash cell they cover;
    # the upload's caption band (text cut away) is compared with the flag's caption band.
    original = images.photo(53, (800, 600))
    flagged = ban(original)
    data = images.encode(images.captioned(original), "JPEG", quality=90)
    checked = upload_fingerprints(io.BytesIO(data))
    stored = {v.variant: v.fingerprint for v in flagged.variants.all()}
    whole = min(checked.frames[0].distance(fp) for fp in stored.values())
    band = checked.cuts[BAND].distance(stored[BAND])
    assert band < whole  # the premise: the band is the closer comparison
    settings.MODERATION_MAX_DISTANCE = band  # within reach of the band only

    response = post_photo(alice_client, data, "meme.jpg")

    assert response.status_code == 200 and GENERIC in response.content.decode()
    assert not Profile.objects.get(user=user).photo
    refused = RefusedUpload.objects.get()
    assert (refused.dhash, refused.nearest_id, refused.distance) == (
        checked.cuts[BAND].signed, flagged.pk, band
    )
    assert (refused.found_by, refused.variant) == ("cut", BAND)
    assert refused.variant_name == f"{VARIANTS[BAND].label}, the upload cut alike"


def test_an_unrelated_photo_is_not_caught_by_crop_variants(alice_client, user):
    for seed in range(46, 52):
        ban(images.photo(seed))

    assert post_photo(alice_client, images.photo(99)).status_code == 302
    assert Profile.objects.get(user=user).photo


def test_unflag_removes_the_crop_variants_from_the_banned_set(moderator):
    flagged = ban(images.photo(53), actor=moderator)
    copy = fingerprint(images.upload(cut_off(images.photo(53), "left", 0.10)))
    assert screening.check(copy).blocked

    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    assert not screening.check(copy).blocked
    assert len(banned_set.current()) == 0
    logged_off = BannedSetChange.objects.filter(fingerprint=flagged, active=False)
    assert set(CROPS) <= set(logged_off.values_list("variant", flat=True))
    assert banned_set.BannedSet().find(copy) == []  # a process that loads the set only now


# --- reindex, import -----------------------------------------------------------------------


def make_pipeline_3(flagged: FlaggedFingerprint) -> None:
    """What a flag made before crop variants looks like: 8 orientations, pipeline 3."""
    FingerprintVariant.objects.filter(flagged=flagged, variant__in=CROPS).delete()
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(pipeline_version=3)
    banned_set.reset()


def test_reindex_from_an_old_pipeline_version_adds_the_crop_variants(moderator):
    flagged = ban(images.photo(54), actor=moderator)  # the original is kept
    make_pipeline_3(flagged)
    copy = fingerprint(images.upload(cut_off(images.photo(54), "right", 0.10)))
    assert not screening.check(copy).blocked

    call_command("reindex", verbosity=0)

    flagged.refresh_from_db()
    assert flagged.pipeline_version == PIPELINE_VERSION
    assert sorted(flagged.variants.values_list("variant", flat=True)) == list(
        range(KEYS_PER_FLAG)
    )
    assert screening.check(copy).blocked  # the loaded set saw the change


def test_reindex_again_changes_nothing(moderator):
    flagged = ban(images.photo(55), actor=moderator)
    make_pipeline_3(flagged)
    call_command("reindex", verbosity=0)
    rows = sorted(FingerprintVariant.objects.values_list("id", "variant", "dhash", "phash"))
    changes = BannedSetChange.objects.count()

    call_command("reindex", "--restart", verbosity=0)

    assert sorted(FingerprintVariant.objects.values_list("id", "variant", "dhash", "phash")) == rows
    assert BannedSetChange.objects.count() == changes


def test_a_flag_without_its_original_keeps_its_orientations_through_reindex(moderator):
    flagged = ban(images.photo(56), actor=moderator, keep_original=False)
    make_pipeline_3(flagged)

    call_command("reindex", verbosity=0)

    flagged.refresh_from_db()
    assert flagged.pipeline_version == 3  # nothing to recompute crops from
    assert sorted(flagged.variants.values_list("variant", flat=True)) == list(range(8))


def test_an_imported_bare_hash_is_matched_by_its_upright_fingerprint_only():
    upright = fingerprint(images.upload(images.photo(57), "p.png", "PNG"))
    record = exchange.FingerprintRecord(
        dhash=upright.hex, list="partner", reason="shared", source="import",
        created="2026-01-01T00:00:00+00:00", pipeline_version=1, information=None,
        variants=((0, upright.hex, None),),
    )

    assert exchange.import_fingerprint(record=record)

    flagged = FlaggedFingerprint.objects.get()
    assert list(flagged.variants.values_list("variant", flat=True)) == [0]
    assert screening.check(upright).blocked  # within the unconfirmed distance: the same image


@pytest.mark.parametrize("numbers", [(0, len(VARIANTS)), (0, 9, 9)], ids=["unknown", "repeated"])
def test_an_imported_record_with_an_unknown_or_repeated_variant_is_refused(numbers):
    upright = fingerprint(images.upload(images.photo(58), "p.png", "PNG"))
    record = exchange.FingerprintRecord(
        dhash=upright.hex, list="partner", reason="shared", source="import",
        created="2026-01-01T00:00:00+00:00", pipeline_version=PIPELINE_VERSION, information=40,
        variants=tuple((n, upright.hex, None) for n in numbers),
    )

    with pytest.raises(ValidationError, match="variants must be distinct numbers"):
        exchange.import_fingerprint(record=record)
    assert not FlaggedFingerprint.objects.exists()
