"""The verification stage of screening: a candidate whose 64-bit hashes match a flag blocks only
when the picture is verified to be that flag's (local features); a different picture whose hashes
collide passes, and is shown to staff as rejected. A flag without a signal (a list of bare hashes)
keeps the rule's answer. Featureless pictures are refused as flags.

A collision is made on purpose: flag picture A, then give A's stored variants the hashes of a
different picture B (what two smooth pictures do by chance at scale)."""

from __future__ import annotations

import io
import json
from io import StringIO
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from PIL import Image

from moderation import banned_set, flagging, matching, screening, verification
from moderation.hashing import fingerprint_variants
from moderation.models import FingerprintVariant, FlaggedFingerprint, ReviewItem
from profiles.models import Profile
from tests import images
from tests.helpers import ban

pytestmark = pytest.mark.django_db


def scene(seed: int) -> Image.Image:
    """A textured drawn scene, cut above its "scene N" caption: two different scenes would
    otherwise share that line of text, which local features can verify on (a known limit)."""
    picture = images.textured(images.photo(seed), seed=seed)
    return picture.crop((0, 0, picture.width, picture.height * 3 // 4))


def collide(flagged: FlaggedFingerprint, other: Image.Image) -> None:
    """Give ``flagged``'s stored variants the hashes of ``other`` (a different picture), as a
    chance collision would, and make this process reload the banned set."""
    variants = fingerprint_variants(io.BytesIO(images.encode(other, "PNG")))
    for row in FingerprintVariant.objects.filter(flagged=flagged):
        row.dhash, row.phash = variants[row.variant].signed, variants[row.variant].phash_signed
        row.save(update_fields=["dhash", "phash"])
    banned_set.reset()


def test_a_different_picture_whose_hashes_collide_with_a_flag_is_accepted(upload, user):
    flagged = ban(scene(501))
    innocent = scene(502)
    collide(flagged, innocent)

    response = upload(innocent)

    assert response.status_code == 302  # stored
    assert Profile.objects.get(user=user).photo
    assert not ReviewItem.objects.exists()  # and no moderator is asked to look


def test_without_a_stored_signal_the_same_collision_is_blocked_as_by_the_rule_alone(upload, user):
    """The control: the collision is real; a flag from a list of bare hashes keeps the rule."""
    flagged = ban(scene(501))
    innocent = scene(502)
    collide(flagged, innocent)
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(verification=b"")

    response = upload(innocent)

    assert response.status_code == 200  # refused
    assert not Profile.objects.get(user=user).photo


def test_an_edited_copy_of_the_flagged_picture_is_still_blocked(upload, user):
    picture = scene(503)
    ban(picture)
    w, h = picture.size
    copy = images.recompressed(picture.crop((w // 10, h // 10, w, h)), 60)

    response = upload(copy)

    assert response.status_code == 200
    assert not Profile.objects.get(user=user).photo


def test_check_image_lists_the_collision_as_rejected_with_its_inliers(tmp_path):
    flagged = ban(scene(504))
    innocent = scene(505)
    collide(flagged, innocent)
    path = tmp_path / "innocent.png"
    innocent.save(path)
    out = StringIO()

    call_command("check_image", str(path), "--json", stdout=out)

    result = json.loads(out.getvalue())
    assert result["decision"] == "pass"
    [rejected] = result["rejected"]
    assert rejected["id"] == flagged.pk
    assert rejected["inliers"] is not None  # compared, and found to be another picture


def test_a_featureless_picture_is_refused_as_a_flag_even_with_informative_bits():
    smooth = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
    smooth = Image.blend(
        smooth, smooth.transpose(Image.Transpose.ROTATE_90).resize((640, 480)), 0.3
    )

    with pytest.raises(ValidationError) as refused:
        flagging.flag_image(
            file=images.upload(smooth, "smooth.png", "PNG"),
            reason="fog",
            source=FlaggedFingerprint.Source.COMMAND,
        )

    assert refused.value.code == "low_information"
    assert not FlaggedFingerprint.objects.exists()


def test_a_superuser_may_flag_a_featureless_picture_and_its_match_only_sends_to_review(
    upload, user, django_user_model
):
    admin = django_user_model.objects.create_superuser("root", password="pw-root-123")
    smooth = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
    flagging.flag_image(
        file=images.upload(smooth, "smooth.png", "PNG"),
        reason="fog",
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
        actor=admin,
        allow_low_information=True,
    )

    response = upload(smooth)

    assert response.status_code == 302  # accepted, never blocked by it alone
    assert ReviewItem.objects.filter(uploader=user).exists()


def _signal(count: int, seed: int = 0) -> bytes:
    """A signal of ``count`` keypoints spread over a 512 x 384 picture."""
    rng = np.random.default_rng(seed)
    positions = rng.uniform((0, 0), (512, 384), (count, 2)).astype(np.float32)
    descriptors = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    return verification.pack(
        verification.Signal((512, 384), (verification.Keypoints(positions, descriptors),))
    )


@pytest.mark.parametrize(
    "keypoints, decision",
    [
        (verification.MIN_FLAG_KEYPOINTS, matching.BLOCK),
        (verification.MIN_FLAG_KEYPOINTS - 1, matching.REVIEW),  # only a superuser's override
    ],
)
def test_a_verified_match_blocks_only_when_the_flag_has_the_keypoints_a_flag_needs(
    keypoints, decision
):
    signal = _signal(keypoints)
    image = SimpleNamespace(whole=lambda mirrored=False: signal)  # the upload: that very picture
    verdict = matching.Verdict(matching.BLOCK, [matching.Match(7, 0, confirm_distance=0)])

    checked = screening.verify(verdict, screening.Verifier(image, flags=lambda ids: {7: signal}))

    assert checked.decision == decision
