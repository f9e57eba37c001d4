"""Uploads against hash lists' PDQ, MD5 and SHA-256 entries: the same decision as dHash flags
(enforce blocks, shadow records, a switched-off list matches nothing), shown in the same
places (refusals, review queue, shadow hits), and counted on the entry."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from moderation import desk, hash_lists, pdq, signal_lists, signals
from moderation.models import HashList, RefusedUpload, ReviewItem, ShadowHit, SignalEntry
from profiles.models import Profile
from tests import images

pytestmark = pytest.mark.django_db


def png(img) -> bytes:
    return images.upload(img, "me.png", "PNG").read()


def pdq_of(img) -> str:
    return signals.file_hashes(io.BytesIO(png(img))).pdq


def entry(name, kind, value, **fields) -> SignalEntry:
    hash_list, _ = HashList.objects.get_or_create(
        name=name, defaults={"mode": fields.pop("mode", HashList.Mode.ENFORCE)}
    )
    return signal_lists.entry_add(hash_list=hash_list, signal_type=kind, value=value, **fields)


def test_an_upload_whose_pdq_is_in_an_enforced_list_is_refused_and_recorded(upload, user):
    img = images.photo(301)
    listed = entry("partner", "pdq", pdq_of(img), source="exchange")

    response = upload(img)

    assert response.status_code == 200  # the form shows the generic error
    assert not Profile.objects.filter(user=user).exclude(photo="").exists()
    refused = RefusedUpload.objects.get()
    assert (refused.code, refused.signal_entry, refused.found_by) == (
        "banned_image",
        listed,
        "pdq in list partner",
    )
    listed.refresh_from_db()
    assert listed.times_matched == 1


def test_a_resized_copy_is_caught_by_the_pdq_of_the_original(upload, user):
    img = images.textured(images.photo(302), seed=2)
    entry("partner", "pdq", pdq_of(img))
    copy = img.resize((480, 360))
    response = upload(copy)
    assert response.status_code == 200
    assert RefusedUpload.objects.get().signal_entry is not None


def test_an_md5_entry_refuses_those_exact_bytes_and_not_a_re_encoding(upload, user):
    img = images.photo(303)
    entry("exact", "md5", hashlib.md5(png(img)).hexdigest())
    assert upload(img).status_code == 200
    assert RefusedUpload.objects.count() == 1
    assert upload(img.resize((639, 479))).status_code == 302
    assert Profile.objects.get(user=user).photo


def test_a_sha256_entry_refuses_those_exact_bytes(upload):
    img = images.photo(304)
    entry("exact", "sha256", hashlib.sha256(png(img)).hexdigest())
    assert upload(img).status_code == 200
    assert RefusedUpload.objects.get().found_by == "sha256 in list exact"


def test_a_shadow_lists_pdq_match_is_accepted_and_recorded_as_a_shadow_hit(upload, user):
    img = images.photo(305)
    listed = entry("trial", "pdq", pdq_of(img), mode=HashList.Mode.SHADOW)

    assert upload(img).status_code == 302

    hit = ShadowHit.objects.get()
    assert (hit.signal_entry, hit.hash_list.name, hit.fingerprint, hit.uploader) == (
        listed,
        "trial",
        None,
        user,
    )
    assert not RefusedUpload.objects.exists()


def test_a_low_quality_entry_only_queues_the_upload_and_a_dismissal_is_counted(
    upload, user, moderator
):
    img = images.photo(306)
    listed = entry("partner", "pdq", pdq_of(img), quality=pdq.MIN_QUALITY - 1)

    assert upload(img).status_code == 302

    item = ReviewItem.objects.get()
    assert (item.signal_entry, item.fingerprint) == (listed, None)
    assert desk.review_dismiss(item=item, actor=moderator)
    listed.refresh_from_db()
    assert (listed.times_matched, listed.times_dismissed) == (1, 1)


def test_a_switched_off_list_refuses_nothing(upload, user):
    img = images.photo(307)
    listed = entry("partner", "pdq", pdq_of(img))
    hash_lists.hash_list_update(
        hash_list=listed.hash_list, max_distance=None, enabled=False, mode="enforce"
    )
    assert upload(img).status_code == 302


def test_a_retracted_entry_refuses_nothing_from_the_next_upload(upload, user):
    img = images.photo(308)
    listed = entry("partner", "pdq", pdq_of(img))
    signal_lists.entry_retract(entry=listed)
    assert upload(img).status_code == 302


def test_the_banned_set_exported_as_pdq_catches_a_mirrored_copy_as_a_pdq_only_list(upload, user):
    """Export every orientation's PDQ, import it as a partner's list of bare hashes, take the
    flag away: the partner-side list alone refuses a mirrored copy."""
    from moderation import flagging
    from moderation.models import FlaggedFingerprint
    from tests.helpers import flag_file

    img = images.textured(images.photo(309), seed=9)
    flagged = flag_file(img).fingerprint
    exported = io.StringIO()
    assert signal_lists.export_banned_set_pdq(exported, "te", every_orientation=True) == 8
    flagging.unflag_fingerprint(flagged=flagged, actor=None, reason="moved to a PDQ list")
    assert not FlaggedFingerprint.objects.active().exists()
    partner = HashList.objects.create(name="partner")
    imp = signal_lists.import_start(
        hash_list=partner,
        file=io.BytesIO(exported.getvalue().encode()),
        file_name="ours.te",
        fmt="te",
    )
    signal_lists.run_import(imp)

    response = upload(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))

    assert response.status_code == 200
    assert RefusedUpload.objects.get().found_by == "pdq in list partner"
