"""Which variant matched is named one way everywhere: ``check_image``, the refused uploads'
admin and the pages that show a refusal all call ``matching.name_variant``.

They disagreed because a refusal kept only what of the upload was compared ("whole image") and
dropped which of the flag's variants matched ("mirrored"), which ``check_image`` printed.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from PIL import Image

from moderation.matching import Match, name_variant
from moderation.models import RefusedUpload
from moderation.variants import BAND, VARIANTS
from tests import images
from tests.helpers import ban, moderator_client, post_photo

pytestmark = pytest.mark.django_db

MIRRORED = next(n for n, v in enumerate(VARIANTS) if v.label == "mirrored")
REFUSED = "admin:moderation_refusedupload_changelist"


def test_a_whole_image_match_is_named_by_the_flags_variant():
    match = Match(fingerprint_id=1, distance=0, variant=MIRRORED)
    assert match.variant_name == name_variant(variant=MIRRORED, found_by="whole") == "mirrored"


def test_a_cut_and_a_framed_picture_say_what_of_the_upload_was_compared():
    cut = Match(fingerprint_id=1, distance=0, variant=BAND, by_cut=True)
    framed = Match(fingerprint_id=1, distance=0, variant=MIRRORED, by_inner=True)
    assert cut.variant_name == f"{VARIANTS[BAND].label}, the upload cut alike"
    assert framed.variant_name == "mirrored, the picture inside the upload's frame"


def test_a_refusal_recorded_before_variants_were_kept_says_so_and_a_list_match_is_shown_as_is():
    assert name_variant(variant=None, found_by="whole") == "whole image (variant not recorded)"
    assert name_variant(variant=None, found_by="pdq in list partner") == "pdq in list partner"


def test_a_refused_mirrored_copy_is_named_mirrored_by_check_image_and_by_the_admin(
    client, user, moderator, tmp_path
):
    picture = images.photo(24)
    flagged = ban(picture, reason="scam ad")
    mirrored = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    client.force_login(user)
    post_photo(client, mirrored, "mirror.png", "PNG")

    refused = RefusedUpload.objects.get()
    assert (refused.nearest, refused.found_by, refused.variant) == (flagged, "whole", MIRRORED)
    path = tmp_path / "mirror.png"
    path.write_bytes(images.encode(mirrored, "PNG"))
    out = StringIO()
    call_command("check_image", str(path), "--json", stdout=out)
    [match] = json.loads(out.getvalue())["matches"]
    text = StringIO()
    call_command("check_image", str(path), stdout=text)

    staff = moderator_client(moderator)
    listed = staff.get(reverse(REFUSED)).content.decode()
    shown = staff.get(
        reverse("admin:moderation_refusedupload_change", args=[refused.pk])
    ).content.decode()
    assert match["variant"] == refused.variant_name == "mirrored"
    assert ", mirrored, pHash distance" in text.getvalue()
    assert "mirrored" in listed and "mirrored" in shown
    assert "whole image" not in listed + shown


def test_a_refusal_found_by_the_caption_band_is_named_as_its_match_is(
    client, user, moderator, settings
):
    original = images.photo(53, (800, 600))
    ban(original)
    meme = images.captioned(original)
    settings.MODERATION_MAX_DISTANCE = images.cut_distances(original, meme)[BAND]
    client.force_login(user)
    post_photo(client, meme, "meme.png", "PNG")

    refused = RefusedUpload.objects.get()
    shown = moderator_client(moderator).get(
        reverse("admin:moderation_refusedupload_change", args=[refused.pk])
    )
    assert (refused.found_by, refused.variant) == ("cut", BAND)
    expected = Match(fingerprint_id=0, distance=0, variant=BAND, by_cut=True).variant_name
    assert refused.variant_name == expected
    assert expected in shown.content.decode()
