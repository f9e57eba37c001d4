"""The matching rule: flags store every orientation, pHash confirms dHash, low-information
images are gated.

(The crop variants a flag also stores are tested in ``test_variants.py``.)

Images are drawn in code (``tests.images``); a near-flat "fog" is a uniform grey with faint
noise, and a symmetric image is a drawn scene mirrored onto its own right half.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.checks import run_checks
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image

from moderation import banned_set, flagging, matching, screening
from moderation.banned_index import KEYS_PER_FLAG, BannedIndex, entry_key
from moderation.decoding import open_for_hashing
from moderation.hashing import (
    PIPELINE_VERSION,
    Fingerprint,
    fingerprint,
    fingerprint_variants,
    hamming,
    phash_thumbnail,
)
from moderation.matching import MatchRule
from moderation.models import AuditEvent, BannedSetChange, FingerprintVariant, FlaggedFingerprint
from moderation.validators import BannedImageValidator
from moderation.variants import ORIENTATIONS, UPLOAD_CUTS, VARIANTS
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import images

pytestmark = pytest.mark.django_db


def fog(seed: int = 0, size=(480, 360)) -> Image.Image:
    """A near-flat grey picture: what fog, a clear sky or a plain wall hash like."""
    rng = np.random.default_rng(seed)
    base = 120 + seed % 40
    pixels = np.clip(base + rng.normal(0, 1.5, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def symmetric(seed: int) -> Image.Image:
    """A scene whose right half mirrors its left: mirroring it changes nothing."""
    img = images.photo(seed)
    half = img.crop((0, 0, img.width // 2, img.height))
    img.paste(half.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (img.width // 2, 0))
    return img


def flag(img, *, actor=None, allow_low=False, reason="test ban") -> flagging.FlagResult:
    return flagging.flag_image(
        file=images.upload(img, "banned.png", "PNG"),
        reason=reason,
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
        actor=actor,
        keep_original=False,
        allow_low_information=allow_low,
    )


def fp_of(img, fmt="PNG") -> Fingerprint:
    return fingerprint(images.upload(img, f"x.{fmt.lower()}", fmt))


# --- hashing ---------------------------------------------------------------------------


def test_the_confirmation_hash_is_imagehash_phash_of_the_reduced_thumbnail():
    import imagehash

    upload = images.upload(images.photo(3), "p.jpg")
    fp = fingerprint(upload)
    grey = open_for_hashing(upload).convert("L")
    thumbnail = Image.fromarray(phash_thumbnail(grey))
    assert fp.phash == int(str(imagehash.phash(thumbnail)), 16)
    # ... which is the exact 32x32 thumbnail's pHash give or take a few bits.
    exact = int(str(imagehash.phash(open_for_hashing(upload))), 16)
    assert hamming(fp.phash, exact) <= 4
    assert fp.hex == str(imagehash.dhash(open_for_hashing(upload)))


def test_orientation_fingerprints_are_those_of_the_flipped_and_turned_image():
    img = images.photo(4)
    variants = fingerprint_variants(images.upload(img, "p.png", "PNG"))
    assert len(variants) == KEYS_PER_FLAG and len(ORIENTATIONS) == 8
    for (name, transpose), variant in zip(ORIENTATIONS, variants):
        turned = img if transpose is None else img.transpose(transpose)
        assert variant == fp_of(turned), name


def test_a_near_flat_picture_has_little_information_and_a_scene_a_lot(settings):
    assert fp_of(fog()).information < settings.MODERATION_MIN_INFORMATION
    assert fp_of(Image.new("RGB", (200, 200), "white")).information == 0
    for seed in range(1, 6):
        assert fp_of(images.photo(seed)).information >= settings.MODERATION_MIN_INFORMATION


# --- flagging stores every orientation ---------------------------------------------------


def test_flagging_stores_all_8_orientations_under_one_flag(moderator):
    result = flag(images.photo(5), actor=moderator)

    variants = list(FingerprintVariant.objects.filter(flagged=result.fingerprint))
    assert set(range(8)) <= {v.variant for v in variants}
    expected = fingerprint_variants(images.upload(images.photo(5), "p.png", "PNG"))
    for v in variants:
        assert v.dhash == expected[v.variant].signed
        assert v.phash == expected[v.variant].phash_signed
    assert FlaggedFingerprint.objects.count() == 1
    assert result.fingerprint.information == expected[0].information
    assert result.fingerprint.pipeline_version == PIPELINE_VERSION


@pytest.mark.parametrize(
    "transpose",
    [t for _, t in ORIENTATIONS[1:]],
    ids=[name for name, _ in ORIENTATIONS[1:]],
)
def test_a_flipped_or_turned_copy_is_blocked_through_its_orientation(moderator, transpose):
    flagged = flag(images.photo(6), actor=moderator).fingerprint
    copy = images.recompressed(images.photo(6).transpose(transpose), 80)

    verdict = screening.check(fp_of(copy, "JPEG"))

    assert verdict.blocked
    assert verdict.nearest.fingerprint_id == flagged.pk
    assert ORIENTATIONS[verdict.nearest.variant][1] == transpose


def test_unflag_removes_every_orientation_from_the_banned_set(moderator):
    flagged = flag(images.photo(7), actor=moderator).fingerprint
    mirrored = fp_of(images.photo(7).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert screening.check(mirrored).blocked
    assert len(banned_set.current()) == KEYS_PER_FLAG

    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    assert not screening.check(mirrored).blocked
    assert len(banned_set.current()) == 0
    other = banned_set.BannedSet()  # a process that loads the set only now
    assert other.find(mirrored) == [] and len(other) == 0


def test_a_symmetric_image_stores_its_coinciding_orientations_once(moderator):
    img = symmetric(8)
    variants = fingerprint_variants(images.upload(img, "s.png", "PNG"))
    assert variants[1] == variants[0]  # mirroring changes nothing

    result = flag(img, actor=moderator)
    again = flag(img, actor=moderator)

    stored = sorted(result.fingerprint.variants.values_list("variant", flat=True))
    assert 1 not in stored and 0 in stored
    assert len(stored) == len({(v.dhash, v.phash) for v in variants})
    assert not again.created
    verdict = screening.check(fp_of(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    assert verdict.blocked and [m.fingerprint_id for m in verdict.matches] == [
        result.fingerprint.pk
    ]


def test_a_mirrored_copy_already_on_a_profile_is_swept(
    moderator, django_user_model, django_capture_on_commit_callbacks
):
    user = django_user_model.objects.create_user(username="bob", password="pw-bob")
    profile = profile_for(user=user)
    mirrored = images.photo(9).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    profile_set_photo(profile=profile, upload=images.upload(mirrored))

    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag(images.photo(9), actor=moderator).fingerprint

    profile.refresh_from_db()
    assert not profile.photo and profile.photo_phash is None
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert takedown.fingerprint == flagged


def test_flag_and_unflag_log_one_change_per_stored_variant(moderator):
    flagged = flag(images.photo(10), actor=moderator).fingerprint
    flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    rows = list(BannedSetChange.objects.filter(fingerprint=flagged).order_by("id"))
    n = KEYS_PER_FLAG  # a drawn scene has no coinciding variants
    assert [r.active for r in rows] == [True] * n + [False] * n
    assert sorted(r.variant for r in rows[:n]) == list(range(n))
    assert all(r.phash is not None for r in rows)


# --- confirmation --------------------------------------------------------------------------


RULE = MatchRule(max_distance=12, max_confirm_distance=16, max_unconfirmed_distance=6)


def index_with(*entries) -> BannedIndex:
    index = BannedIndex()
    index.build(entries)
    return index


def flip_bits(value: int, count: int, seed: int = 0) -> int:
    for bit in random.Random(seed).sample(range(64), count):
        value ^= 1 << bit
    return value


def test_a_dhash_candidate_is_blocked_only_when_the_phash_agrees():
    dhash, phash = 0x0123456789ABCDEF, 0xFEDCBA9876543210
    index = index_with((entry_key(1, 0), dhash, phash, False))

    near = Fingerprint(flip_bits(dhash, 12), phash=flip_bits(phash, 16))
    far_phash = Fingerprint(flip_bits(dhash, 3), phash=flip_bits(phash, 17))
    far_dhash = Fingerprint(flip_bits(dhash, 13), phash=phash)

    assert index.check(near, RULE).blocked
    assert [(m.distance, m.confirm_distance) for m in index.check(near, RULE).matches] == [
        (12, 16)
    ]
    assert index.check(far_phash, RULE).decision == matching.PASS
    assert index.check(far_phash, RULE).candidates[0].confirm_distance == 17
    assert index.check(far_dhash, RULE).decision == matching.PASS


def test_a_row_without_a_phash_blocks_only_within_the_unconfirmed_distance():
    dhash = 0x0F0F0F0F0F0F0F0F
    index = index_with((entry_key(1, 0), dhash, None, False))

    assert index.check(Fingerprint(flip_bits(dhash, 6), phash=123), RULE).blocked
    verdict = index.check(Fingerprint(flip_bits(dhash, 7), phash=123), RULE)
    assert verdict.decision == matching.PASS
    assert verdict.candidates[0].confirm_distance is None


def test_an_upload_without_a_phash_is_held_to_the_unconfirmed_distance():
    dhash = 0x00FF00FF00FF00FF
    index = index_with((entry_key(1, 0), dhash, 42, False))
    assert index.check(Fingerprint(flip_bits(dhash, 6)), RULE).blocked
    assert not index.check(Fingerprint(flip_bits(dhash, 7)), RULE).blocked


def test_one_flag_is_reported_once_through_the_orientation_that_matched():
    dhash, phash = 0x1111222233334444, 0x5555666677778888
    index = index_with(
        (entry_key(3, 0), dhash, flip_bits(phash, 30), False),  # near dHash, pHash disagrees
        (entry_key(3, 4), flip_bits(dhash, 5, seed=1), phash, False),
    )
    verdict = index.check(Fingerprint(dhash, phash=phash), RULE)
    assert [(m.fingerprint_id, m.variant, m.distance) for m in verdict.matches] == [(3, 4, 5)]
    assert [(m.fingerprint_id, m.variant) for m in verdict.candidates] == [(3, 0)]


def test_confirmation_hashes_survive_many_adds_and_removes():
    """The compact per-entry store agrees with a dict through merges and replacements."""
    rng = random.Random(5)
    index, expected = BannedIndex(), {}
    for _ in range(5000):
        key = rng.randrange(3000)
        if rng.random() < 0.3:
            index.remove(key)
            expected.pop(key, None)
        else:
            dhash, phash = rng.getrandbits(64), rng.choice([None, rng.getrandbits(64)])
            index.add(key, dhash, phash, False)
            expected[key] = (dhash, phash)
    assert len(index) == len(expected)
    for key, (dhash, phash) in rng.sample(sorted(expected.items()), 300):
        [hit] = [m for m in index.candidates(Fingerprint(dhash, phash=0), 0) if
                 m.fingerprint_id * KEYS_PER_FLAG + m.variant == key]
        assert hit.confirm_distance == (None if phash is None else hamming(phash, 0))


# --- the low-information gate --------------------------------------------------------------


def test_flagging_a_near_flat_image_is_refused_with_a_clear_message(moderator):
    with pytest.raises(ValidationError) as excinfo:
        flag(fog(), actor=moderator)

    assert excinfo.value.code == "low_information"
    assert "too little detail" in excinfo.value.messages[0]
    assert "superuser" in excinfo.value.messages[0]
    assert not FlaggedFingerprint.objects.exists()


def test_only_a_superuser_may_override_the_gate(moderator, admin_user):
    with pytest.raises(PermissionDenied):
        flag(fog(), actor=moderator, allow_low=True)
    assert not FlaggedFingerprint.objects.exists()

    result = flag(fog(), actor=admin_user, allow_low=True, reason="fog spam")

    assert result.created
    assert result.fingerprint.information < 20
    event = AuditEvent.objects.get(action=AuditEvent.Action.FLAG)
    assert "low-information" in event.reason


def test_a_match_with_a_low_information_flag_never_blocks_an_upload_alone(admin_user):
    flagged = flag(fog(1), actor=admin_user, allow_low=True).fingerprint
    same = fp_of(fog(1))

    verdict = screening.check(same)

    assert verdict.decision == matching.REVIEW
    assert [m.fingerprint_id for m in verdict.matches] == [flagged.pk]
    assert verdict.matches[0].low_information
    BannedImageValidator()(images.upload(fog(1), "fog.png", "PNG"))  # passes: no error


def test_an_informative_match_still_blocks_beside_a_low_information_one(admin_user):
    flag(fog(2), actor=admin_user, allow_low=True)
    flagged = flag(images.photo(11), actor=admin_user).fingerprint
    verdict = screening.check(fp_of(images.photo(11)))
    assert verdict.blocked and verdict.nearest.fingerprint_id == flagged.pk


def test_flag_images_skips_low_information_files_unless_forced(tmp_path, capsys):
    (tmp_path / "fog.png").write_bytes(images.encode(fog(3), "PNG"))
    (tmp_path / "scene.png").write_bytes(images.encode(images.photo(12), "PNG"))

    call_command("flag_images", str(tmp_path), "--reason", "r", "--no-keep-originals")
    assert FlaggedFingerprint.objects.count() == 1
    err = capsys.readouterr().err
    assert "fog.png: skipped:" in err and "--force" in err

    call_command("flag_images", str(tmp_path / "fog.png"), "--reason", "r", "--force")
    assert FlaggedFingerprint.objects.count() == 2


def test_flagging_a_low_information_profile_photo_changes_nothing(moderator, django_user_model):
    user = django_user_model.objects.create_user(username="carol", password="pw-carol")
    profile = profile_for(user=user)
    profile_set_photo(profile=profile, upload=images.upload(fog(4), "fog.png", "PNG"))

    with pytest.raises(ValidationError):
        flagging.flag_stored_image(instance=profile, reason="r", actor=moderator)

    profile.refresh_from_db()
    assert profile.photo and not FlaggedFingerprint.objects.exists()


# --- settings, reindex, migration ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "MODERATION_MAX_DISTANCE",
        "MODERATION_MAX_CONFIRM_DISTANCE",
        "MODERATION_MAX_UNCONFIRMED_DISTANCE",
        "MODERATION_MIN_INFORMATION",
    ],
)
@pytest.mark.parametrize("value", [-1, 65, "12", True])
def test_match_rule_settings_outside_0_to_64_are_system_check_errors(settings, name, value):
    setattr(settings, name, value)
    errors = [e for e in run_checks() if e.id == "moderation.E001"]
    assert [e.obj for e in errors] == [f"settings.{name}"]


def test_reindex_brings_an_old_flag_to_every_variant_with_phash(moderator):
    flagged = flagging.flag_image(
        file=images.upload(images.photo(13), "p.png", "PNG"),
        reason="old",
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
        actor=moderator,
    ).fingerprint
    # What a pipeline-2 flag looks like after the migration: upright dHash only, no pHash.
    FingerprintVariant.objects.filter(flagged=flagged).exclude(variant=0).delete()
    FingerprintVariant.objects.filter(flagged=flagged).update(phash=None)
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(pipeline_version=2, information=None)
    banned_set.reset()
    mirrored = fp_of(images.photo(13).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert not screening.check(mirrored).blocked

    call_command("reindex", verbosity=0)

    flagged.refresh_from_db()
    assert flagged.pipeline_version == PIPELINE_VERSION and flagged.information is not None
    assert sorted(flagged.variants.values_list("variant", flat=True)) == list(range(KEYS_PER_FLAG))
    assert not flagged.variants.filter(phash=None).exists()
    assert screening.check(mirrored).blocked  # the loaded set saw the change


def test_reindex_stores_the_phash_of_a_profile_photo(django_user_model):
    user = django_user_model.objects.create_user(username="dan", password="pw-dan")
    profile = profile_for(user=user)
    profile_set_photo(profile=profile, upload=images.upload(images.photo(14)))
    phash = Profile.objects.get(pk=profile.pk).photo_phash
    assert phash is not None
    Profile.objects.filter(pk=profile.pk).update(photo_phash=None, photo_pipeline_version=2)

    call_command("reindex", verbosity=0)

    profile.refresh_from_db()
    assert (profile.photo_phash, profile.photo_pipeline_version) == (phash, PIPELINE_VERSION)


def test_the_migration_gives_every_existing_flag_its_upright_fingerprint(moderator):
    import importlib

    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    name = "0003_fingerprint_variants"
    migration = importlib.import_module(f"moderation.migrations.{name}")
    # The models as that migration sees them (the same tables: 0008 renamed a field, not its
    # column).
    apps_then = MigrationLoader(connection).project_state(("moderation", name)).apps
    flagged = flag(images.photo(15), actor=moderator).fingerprint
    FingerprintVariant.objects.all().delete()

    migration.upright_variants_for_existing_flags(apps_then, None)

    [variant] = FingerprintVariant.objects.all()
    assert (variant.flagged, variant.variant, variant.dhash) == (flagged, 0, flagged.dhash)
    assert variant.phash is None


# --- the moderator's surfaces ------------------------------------------------------------------

FLAG_IMAGE = "admin:moderation_flaggedfingerprint_flag_image"
PROFILES = "admin:profiles_profile_changelist"


def staff_client(client, user):
    client.force_login(user)
    return client


def test_flag_image_page_explains_a_low_information_refusal(client, moderator):
    page = staff_client(client, moderator).get(reverse(FLAG_IMAGE)).content.decode()
    assert 'name="allow_low_information"' not in page  # only superusers may override

    response = client.post(
        reverse(FLAG_IMAGE),
        {"image": images.upload(fog(5), "fog.png", "PNG"), "reason": "x",
         "allow_low_information": "on"},
    )

    assert response.status_code == 200
    assert "too little detail" in " ".join(response.context["form"].errors["image"])
    assert not FlaggedFingerprint.objects.exists()


def test_a_superuser_flags_a_low_information_image_with_the_checkbox(admin_client):
    page = admin_client.get(reverse(FLAG_IMAGE)).content.decode()
    assert 'name="allow_low_information"' in page

    response = admin_client.post(
        reverse(FLAG_IMAGE),
        {"image": images.upload(fog(6), "fog.png", "PNG"), "reason": "x",
         "allow_low_information": "on"},
    )

    assert response.status_code == 302
    assert FlaggedFingerprint.objects.get().information < 20


def test_flag_selected_photos_reports_low_information_photos_by_name(
    client, moderator, django_user_model
):
    user = django_user_model.objects.create_user(username="erin", password="pw-erin")
    profile = profile_for(user=user)
    profile_set_photo(profile=profile, upload=images.upload(fog(7), "fog.png", "PNG"))
    staff_client(client, moderator)
    data = {"action": "flag_selected_photos", ACTION_CHECKBOX_NAME: [profile.pk]}
    profile.refresh_from_db()

    response = client.post(
        reverse(PROFILES),
        {**data, "confirm": "yes", "reason": "spam", f"photo-{profile.pk}": profile.photo.name},
    )

    assert response.status_code == 302
    text = " ".join(str(m) for m in response.wsgi_request._messages)
    assert "too little detail" in text and "erin" in text
    assert not FlaggedFingerprint.objects.exists()


def test_a_flag_page_lists_every_stored_variant(admin_client):
    flagged = flag(images.photo(16)).fingerprint
    url = reverse("admin:moderation_flaggedfingerprint_change", args=[flagged.pk])

    page = admin_client.get(url).content.decode()

    for variant in flagged.variants.all():
        assert variant.hex in page
        assert f"{variant.fingerprint.phash:016x}" in page
    assert "turned 90° clockwise" in page and "cut off the left" in page


# --- the upload's cuts (centre, caption band) --------------------------------------------------


@pytest.mark.parametrize("cut", UPLOAD_CUTS, ids=lambda n: VARIANTS[n].label)
def test_an_uploads_cut_is_compared_with_the_same_variant_of_the_flags_only(settings, cut):
    rule = MatchRule.from_settings()
    whole = Fingerprint(0x0F0F_0F0F_0F0F_0F0F, phash=0x1234_5678_9ABC_DEF0)
    same = Fingerprint(0xAAAA_5555_AAAA_5555, phash=0x0FED_CBA9_8765_4321)
    other_cut = next(n for n in UPLOAD_CUTS if n != cut)
    index = BannedIndex()
    # Flag 1's *upright* variant and flag 3's other cut equal the upload's cut: not like for
    # like, so no match.
    index.add(entry_key(1, 0), same.dhash, same.phash, False)
    index.add(entry_key(3, other_cut), same.dhash, same.phash, False)
    cuts = {cut: same, other_cut: Fingerprint(0x1111_2222_3333_4444, phash=0x5555_6666_7777_8888)}
    assert index.check(whole, rule, cuts=cuts).decision == matching.PASS
    # Flag 2's variant of the same cut equals it: blocked, and the match says a cut found it.
    index.add(entry_key(2, cut), same.dhash, same.phash, False)
    verdict = index.check(whole, rule, cuts=cuts)
    assert verdict.decision == matching.BLOCK
    assert verdict.nearest.fingerprint_id == 2 and verdict.nearest.by_cut
    assert verdict.nearest.variant == cut
    # Without the cuts nothing changes.
    assert index.check(whole, rule).decision == matching.PASS
    # The variant's own index follows removal and rebuilding like the whole index.
    index.remove(entry_key(2, cut))
    assert index.check(whole, rule, cuts=cuts).decision == matching.PASS
    rebuilt = BannedIndex()
    rebuilt.build([(entry_key(1, 0), same.dhash, same.phash, False),
                   (entry_key(2, cut), same.dhash, same.phash, False)])
    assert rebuilt.check(whole, rule, cuts=cuts).nearest.fingerprint_id == 2


# --- near misses (the review queue's entry rule) ----------------------------------------------


def test_a_dhash_candidate_far_in_phash_is_a_stranger_not_a_near_miss(settings):
    rule = MatchRule.from_settings()
    stranger = matching.Match(fingerprint_id=1, distance=14, confirm_distance=30)
    assert not rule.reviews(stranger)
    assert matching.decide([stranger], rule).decision == matching.PASS


def test_a_candidate_that_misses_the_rule_on_one_hash_only_is_a_near_miss(settings):
    rule = MatchRule.from_settings()
    over_in_phash = matching.Match(
        fingerprint_id=1,
        distance=settings.MODERATION_MAX_DISTANCE,
        confirm_distance=settings.MODERATION_REVIEW_CONFIRM_DISTANCE,
    )
    over_in_dhash = matching.Match(
        fingerprint_id=2,
        distance=settings.MODERATION_REVIEW_DISTANCE,
        confirm_distance=settings.MODERATION_MAX_CONFIRM_DISTANCE,
    )
    for near in (over_in_phash, over_in_dhash):
        assert not rule.matches(near)
        assert rule.reviews(near)
        assert matching.decide([near], rule).decision == matching.REVIEW


def test_a_candidate_over_the_rule_on_both_hashes_is_a_stranger(settings):
    # What chance collisions look like against a large banned set: a little over on both.
    rule = MatchRule.from_settings()
    both_over = matching.Match(
        fingerprint_id=1,
        distance=settings.MODERATION_MAX_DISTANCE + 1,
        confirm_distance=settings.MODERATION_MAX_CONFIRM_DISTANCE + 1,
    )
    assert not rule.reviews(both_over)
    assert matching.decide([both_over], rule).decision == matching.PASS


def test_a_near_miss_of_a_flag_without_phash_needs_the_match_distance(settings):
    rule = MatchRule.from_settings()
    within = matching.Match(fingerprint_id=1, distance=settings.MODERATION_MAX_DISTANCE)
    beyond = matching.Match(fingerprint_id=2, distance=settings.MODERATION_MAX_DISTANCE + 1)
    assert rule.reviews(within)
    assert not rule.reviews(beyond)


def test_flag_images_says_why_when_every_file_is_too_plain_to_ban(tmp_path):
    (tmp_path / "fog.png").write_bytes(images.encode(fog(4), "PNG"))

    with pytest.raises(CommandError, match="too little information.*--force"):
        call_command("flag_images", str(tmp_path), "--reason", "r", "--no-keep-originals")
    assert not FlaggedFingerprint.objects.exists()
