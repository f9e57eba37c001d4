"""The operator tools: ``flag_images`` (load a banned collection), ``check_image`` (look images
up) and ``demo_setup`` (the local moderator account).

Images are drawn with ``tests.images`` and written into ``tmp_path`` folders, the way an
operator would point the commands at a directory of files.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import imagehash
import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from moderation import flagging, matching, screening
from moderation.decoding import open_image
from moderation.hashing import Fingerprint, fingerprint
from moderation.models import AuditEvent, BannedSetChange, FlaggedFingerprint, ReindexRun
from moderation.verification import VERIFIED_MIN_INLIERS
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import images

pytestmark = pytest.mark.django_db


# --- helpers ----------------------------------------------------------------------------


def writes_in(queries: CaptureQueriesContext) -> list[str]:
    """The statements that changed data (reads, savepoints and cursors are fine)."""
    return [
        q["sql"]
        for q in queries
        if q["sql"].split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}
    ]


def run(name: str, *args, **options) -> tuple[str, str]:
    """Call a management command; return what it wrote to stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def write(path: Path, img=None, *, seed: int = 1, fmt: str = "JPEG", **params) -> Path:
    """Draw scene ``seed`` (or save ``img``) into ``path``, creating folders on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(images.encode(img if img is not None else images.photo(seed), fmt, **params))
    return path


def fingerprint_of(path: Path) -> Fingerprint:
    with path.open("rb") as fh:
        return fingerprint(fh)


def hex_of(path: Path) -> str:
    return fingerprint_of(path).hex


def ban(img, reason: str = "known bad") -> FlaggedFingerprint:
    return flagging.flag_image(
        file=images.upload(img, "banned.png", "PNG"),
        reason=reason,
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
        keep_original=False,
    ).fingerprint


@pytest.fixture
def incoming(tmp_path) -> Path:
    """A folder of files to hand to the commands (media and quarantine live elsewhere)."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    return folder


@pytest.fixture
def quarantine_files(media_files):
    return lambda: media_files("quarantine")


# --- flag_images ------------------------------------------------------------------------


def test_flag_images_bans_each_file_and_prints_one_line_per_file(incoming):
    a = write(incoming / "a.jpg", seed=1)
    b = write(incoming / "b.png", seed=2, fmt="PNG")

    out, err = run("flag_images", str(a), str(b), reason="spam wave")

    assert FlaggedFingerprint.objects.count() == 2
    assert f"{a}: flagged {hex_of(a)}" in out.splitlines()
    assert f"{b}: flagged {hex_of(b)}" in out.splitlines()
    assert err == ""


def test_flag_images_walks_folders_recursively(incoming):
    paths = [
        write(incoming / "top.jpg", seed=1),
        write(incoming / "one" / "mid.jpg", seed=2),
        write(incoming / "one" / "two" / "deep.png", seed=3, fmt="PNG"),
    ]

    out, _ = run("flag_images", str(incoming), reason="collection")

    assert set(FlaggedFingerprint.objects.values_list("dhash", flat=True)) == {
        fingerprint_of(p).signed for p in paths
    }
    for path in paths:
        assert f"{path}: flagged" in out


def test_flag_images_skips_hidden_files_and_folders(incoming):
    write(incoming / "seen.jpg", seed=1)
    write(incoming / ".hidden.jpg", seed=2)
    write(incoming / ".cache" / "thumb.jpg", seed=3)

    run("flag_images", str(incoming), reason="collection")

    assert FlaggedFingerprint.objects.count() == 1


def test_flag_images_reports_an_already_banned_image_and_adds_no_second_fingerprint(incoming):
    first = write(incoming / "first.jpg", seed=4)
    again = write(incoming / "again.jpg", seed=4)

    out, _ = run("flag_images", str(first), str(again), reason="dupes")

    assert FlaggedFingerprint.objects.count() == 1
    assert f"{again}: already banned as {hex_of(first)}" in out.splitlines()


def test_flag_images_reports_an_image_banned_in_an_earlier_run_as_already_banned(incoming):
    path = write(incoming / "a.jpg", seed=5)
    run("flag_images", str(path), reason="first load")

    out, _ = run("flag_images", str(path), reason="second load")

    assert "already banned" in out
    assert FlaggedFingerprint.objects.count() == 1


def test_flag_images_reports_a_text_file_named_jpg_on_stderr_and_carries_on(incoming):
    fake = incoming / "notes.jpg"
    fake.write_text("this is not a picture\n")
    good = write(incoming / "good.jpg", seed=6)

    out, err = run("flag_images", str(fake), str(good), reason="mixed")

    assert f"{fake}: skipped:" in err
    assert "JPEG, PNG, GIF or WebP" in err
    assert f"{good}: flagged" in out
    assert FlaggedFingerprint.objects.count() == 1


def test_flag_images_reports_a_truncated_jpeg_on_stderr_and_carries_on(incoming):
    data = images.encode(images.photo(7))
    truncated = incoming / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    good = write(incoming / "good.jpg", seed=8)

    out, err = run("flag_images", str(truncated), str(good), reason="mixed")

    assert f"{truncated}: skipped: The image file is damaged or incomplete." in err
    assert f"{good}: flagged" in out
    assert FlaggedFingerprint.objects.count() == 1


def test_flag_images_fails_when_no_file_could_be_read(incoming):
    (incoming / "a.jpg").write_text("nope")
    (incoming / "b.jpg").write_bytes(b"")

    with pytest.raises(CommandError, match="No image could be read"):
        run("flag_images", str(incoming), reason="all bad")

    assert not FlaggedFingerprint.objects.exists()


def test_flag_images_succeeds_when_only_duplicates_were_read(incoming):
    path = write(incoming / "a.jpg", seed=9)
    run("flag_images", str(path), reason="first load")

    out, _ = run("flag_images", str(path), reason="second load")

    assert "0 new, 1 already banned, 0 skipped" in out


def test_flag_images_fails_on_a_missing_path_before_flagging_anything(incoming):
    good = write(incoming / "good.jpg", seed=10)

    with pytest.raises(CommandError, match="no such file or folder"):
        run("flag_images", str(good), str(incoming / "typo.jpg"), reason="typo")

    assert not FlaggedFingerprint.objects.exists()


def test_flag_images_requires_a_reason(incoming):
    path = write(incoming / "a.jpg", seed=11)

    with pytest.raises(CommandError, match="--reason"):
        run("flag_images", str(path))


def test_flag_images_records_source_command_and_the_reason(incoming):
    path = write(incoming / "a.jpg", seed=12)

    run("flag_images", str(path), reason="terror content list #7")

    flagged = FlaggedFingerprint.objects.get()
    assert flagged.source == FlaggedFingerprint.Source.COMMAND
    assert flagged.reason == "terror content list #7"
    assert flagged.flagged_by is None
    audit = AuditEvent.objects.get()
    assert (audit.action, audit.fingerprint, audit.reason) == (
        AuditEvent.Action.FLAG,
        flagged,
        "terror content list #7",
    )


def test_flag_images_keeps_the_original_in_quarantine_storage_not_public_media(
    incoming, media_files, quarantine_files
):
    path = write(incoming / "holiday-snap.jpg", seed=13)

    run("flag_images", str(path), reason="keep")

    flagged = FlaggedFingerprint.objects.get()
    assert quarantine_files() == [flagged.original.name]
    assert "holiday" not in flagged.original.name  # stored under a random name
    with flagged.original.open("rb") as fh:
        assert fh.read() == path.read_bytes()
    assert media_files() == []


def test_flag_images_with_no_keep_originals_stores_no_copy(incoming, quarantine_files):
    path = write(incoming / "a.jpg", seed=14)

    run("flag_images", str(path), reason="hash only", no_keep_originals=True)

    assert FlaggedFingerprint.objects.get().original == ""
    assert quarantine_files() == []


def test_flag_images_prints_a_summary(incoming):
    write(incoming / "a.jpg", seed=15)
    write(incoming / "b.jpg", seed=15)
    (incoming / "c.jpg").write_text("nope")

    out, _ = run("flag_images", str(incoming), reason="summary")

    assert out.splitlines()[-1] == "Flagged 1 new, 1 already banned, 1 skipped."


def test_flag_images_at_verbosity_0_prints_only_problems(incoming):
    write(incoming / "a.jpg", seed=16)
    (incoming / "c.jpg").write_text("nope")

    out, err = run("flag_images", str(incoming), reason="quiet", verbosity=0)

    assert out == ""
    assert "c.jpg: skipped" in err


def test_flag_images_takes_down_existing_photos_that_match_once_committed(
    incoming, user, django_capture_on_commit_callbacks
):
    profile = profile_set_photo(
        profile=profile_for(user=user), upload=images.upload(images.photo(17))
    )
    path = write(incoming / "a.png", seed=17, fmt="PNG")

    with django_capture_on_commit_callbacks(execute=True):
        run("flag_images", str(path), reason="sweep")

    profile.refresh_from_db()
    assert not profile.photo
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).count() == 1


# --- check_image ------------------------------------------------------------------------


def test_check_image_prints_the_hex_dhash_imagehash_gives_the_prepared_image(incoming):
    path = write(incoming / "a.jpg", seed=20)

    out, _ = run("check_image", str(path))

    expected = str(imagehash.dhash(open_image(path)))
    assert out.split()[:2] == [str(path), expected]


def test_check_image_blocks_the_banned_image(incoming):
    ban(images.photo(21))
    path = write(incoming / "same.png", seed=21, fmt="PNG")

    out, _ = run("check_image", str(path))

    assert out.splitlines()[0].endswith("block")


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda img: images.resized(img, 0.5), id="resized-half"),
        pytest.param(lambda img: images.recompressed(img, 40), id="jpeg-q40"),
        pytest.param(lambda img: images.brightened(img, 1.15), id="brighter"),
    ],
)
def test_check_image_blocks_an_edited_copy_of_the_banned_image(incoming, edit):
    ban(images.photo(22))
    path = write(incoming / "copy.jpg", edit(images.photo(22)), quality=85)

    out, _ = run("check_image", str(path), "--json")

    assert json.loads(out)["decision"] == "block"


def test_check_image_decides_a_framed_copy_as_the_upload_path_does_and_says_what_found_it(
    incoming,
):
    from PIL import ImageOps


    original = images.photo(75, (800, 600))
    ban(original)
    path = write(incoming / "padded.jpg", ImageOps.expand(original, border=(120, 90), fill="white"))
    with path.open("rb") as fh:
        assert screening.check(fingerprint(fh)).decision == matching.PASS  # the whole: no match

    out, _ = run("check_image", str(path), "--json")
    text, _ = run("check_image", str(path))

    result = json.loads(out)
    assert result["decision"] == "block"
    assert result["matches"][0]["found_by"] == "frame"
    assert result["matches"][0]["variant"].endswith("the picture inside the upload's frame")
    assert result["matches"][0]["variant"] in text  # named the same in both outputs


def test_check_image_passes_an_unrelated_image(incoming):
    for seed in range(30, 35):
        ban(images.photo(seed))
    path = write(incoming / "other.jpg", seed=99)

    out, _ = run("check_image", str(path))

    assert out.splitlines() == [f"{path}  {hex_of(path)}  pass"]


def test_check_image_lists_matches_with_distance_and_reason_under_the_file(incoming):
    flagged = ban(images.photo(23), reason="scam ad")
    path = write(incoming / "same.png", seed=23, fmt="PNG")

    out, _ = run("check_image", str(path))

    assert f"#{flagged.pk} {flagged.hex} distance 0  scam ad" in out.splitlines()[1]


def test_check_image_json_prints_one_object_per_file_with_the_documented_keys(incoming):
    flagged = ban(images.photo(24), reason="scam ad")
    banned = write(incoming / "banned.png", seed=24, fmt="PNG")
    other = write(incoming / "other.jpg", seed=98)

    out, _ = run("check_image", str(banned), str(other), "--json")

    lines = out.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    banned_fp, other_fp = fingerprint_of(banned), fingerprint_of(other)
    # The very picture: verified by far more keypoint pairs than the bar.
    assert first["matches"][0].pop("inliers") >= VERIFIED_MIN_INLIERS
    assert first == {
        "path": str(banned),
        "dhash": hex_of(banned),
        "phash": f"{banned_fp.phash:016x}",
        "information": banned_fp.information,
        "decision": "block",
        "matches": [
            {
                "id": flagged.pk,
                "list": "default",
                "dhash": flagged.hex,
                "distance": 0,
                "reason": "scam ad",
                "variant": "upright",
                "found_by": "whole",
                "confirm_distance": 0,
                "low_information": False,
            }
        ],
        "near": [],
        "shadow": [],
        "rejected": [],
        "trial": [],
    }
    assert second == {
        "path": str(other),
        "dhash": hex_of(other),
        "phash": f"{other_fp.phash:016x}",
        "information": other_fp.information,
        "decision": "pass",
        "matches": [],
        "near": [],
        "shadow": [],
        "rejected": [],
        "trial": [],
    }


def test_check_image_json_says_which_variant_matched(incoming):
    flagged = ban(images.photo(24), reason="scam ad")
    mirrored = images.photo(24).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    path = write(incoming / "mirrored.png", mirrored, fmt="PNG")

    out, _ = run("check_image", str(path), "--json")

    result = json.loads(out)
    assert result["decision"] == "block"
    [match] = result["matches"]
    assert (match["id"], match["variant"]) == (flagged.pk, "mirrored")
    assert (match["distance"], match["confirm_distance"]) == (0, 0)


def test_check_image_json_lists_matches_nearest_first(incoming):
    original = images.photo(25)
    near = images.at_distance(original, 4, seed=3)
    farther = ban(near, reason="variant")
    exact = ban(original, reason="original")
    path = write(incoming / "query.png", original, fmt="PNG")

    out, _ = run("check_image", str(path), "--json")

    matches = json.loads(out)["matches"]
    assert [(m["id"], m["distance"]) for m in matches] == [(exact.pk, 0), (farther.pk, 4)]


def test_check_image_reports_an_unreadable_file_as_an_error_line_and_carries_on(incoming):
    fake = incoming / "a.jpg"
    fake.write_text("not an image")
    good = write(incoming / "b.jpg", seed=26)

    out, err = run("check_image", str(fake), str(good))

    assert err.startswith(f"{fake}: error: ")
    assert out.startswith(f"{good}  ")


def test_check_image_json_reports_an_unreadable_file_as_an_error_object(incoming):
    fake = incoming / "a.jpg"
    fake.write_text("not an image")
    good = write(incoming / "b.jpg", seed=27)

    out, err = run("check_image", str(fake), str(good), "--json")

    first, second = (json.loads(line) for line in out.splitlines())
    assert first == {"path": str(fake), "error": "Upload a JPEG, PNG, GIF or WebP image."}
    assert second["decision"] == "pass"
    assert err == ""


def test_check_image_fails_when_no_file_could_be_read(incoming):
    (incoming / "a.jpg").write_text("not an image")

    with pytest.raises(CommandError, match="No image could be read"):
        run("check_image", str(incoming))


def test_check_image_max_distance_overrides_the_setting(incoming, settings):
    original = images.photo(28)
    ban(original)
    path = write(incoming / "near.png", images.at_distance(original, 3, seed=4), fmt="PNG")

    strict, _ = run("check_image", str(path), "--json", max_distance=2)
    default, _ = run("check_image", str(path), "--json")

    assert settings.MODERATION_MAX_DISTANCE >= 3
    assert json.loads(strict)["decision"] == "pass"
    assert json.loads(default)["decision"] == "block"


@pytest.mark.parametrize("value", ["-1", "65"])
def test_check_image_refuses_a_max_distance_outside_0_to_64(incoming, value):
    path = write(incoming / "a.jpg", seed=29)

    with pytest.raises(CommandError, match="between 0 and 64"):
        run("check_image", str(path), f"--max-distance={value}")


def test_check_image_never_writes_anything(incoming, media_files, quarantine_files):
    ban(images.photo(40))
    paths = [
        str(write(incoming / "banned.png", seed=40, fmt="PNG")),
        str(write(incoming / "other.jpg", seed=41)),
    ]
    (incoming / "bad.jpg").write_text("nope")
    counts = [
        m.objects.count()
        for m in (FlaggedFingerprint, BannedSetChange, AuditEvent, ReindexRun, Profile)
    ]

    with CaptureQueriesContext(connection) as queries:
        run("check_image", str(incoming), *paths, "--json")

    assert writes_in(queries) == []
    assert counts == [
        m.objects.count()
        for m in (FlaggedFingerprint, BannedSetChange, AuditEvent, ReindexRun, Profile)
    ]
    assert media_files() == [] and quarantine_files() == []


# --- demo_setup -------------------------------------------------------------------------


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True


def test_demo_setup_creates_a_staff_moderator_in_the_moderators_group(debug_on, django_user_model):
    out, _ = run("demo_setup", password="pw-for-the-demo")

    moderator = django_user_model.objects.get(username="moderator")
    assert moderator.is_staff and not moderator.is_superuser
    assert moderator.check_password("pw-for-the-demo")
    assert list(moderator.groups.values_list("name", flat=True)) == ["Moderators"]
    assert "username 'moderator', password 'pw-for-the-demo'" in out


def test_demo_setup_moderator_can_flag_unflag_and_view_quarantine(debug_on, django_user_model):
    run("demo_setup")

    moderator = django_user_model.objects.get(username="moderator")
    assert moderator.has_perms(
        ["moderation.flag_image", "moderation.unflag_image", "moderation.view_quarantine"]
    )


def test_demo_setup_moderator_has_every_permission_the_access_tests_give_a_moderator(
    debug_on, django_user_model
):
    from tests.access_roles import MODERATOR_PERMS

    run("demo_setup")

    moderator = django_user_model.objects.get(username="moderator")
    assert sorted(p for p in MODERATOR_PERMS if not moderator.has_perm(p)) == []


def test_demo_setup_can_run_twice(debug_on, django_user_model):
    run("demo_setup")
    out, _ = run("demo_setup")

    assert django_user_model.objects.filter(username="moderator").count() == 1
    assert Group.objects.filter(name="Moderators").count() == 1
    assert Group.objects.get(name="Moderators").user_set.count() == 1
    assert "Demo moderator ready" in out


def test_demo_setup_refuses_to_run_with_debug_off(settings, django_user_model):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="local development"):
        run("demo_setup")

    assert not django_user_model.objects.filter(username="moderator").exists()
    assert not Group.objects.filter(name="Moderators").exists()
