"""Exchange: a banned set exported to JSON or CSV and imported elsewhere, exactly, idempotently
and all or nothing; an imported flag takes down the stored photos that match it."""

from __future__ import annotations

import base64
import csv
import json
from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from moderation import banned_index, banned_set, flagging, screening
from moderation.hashing import fingerprint_image
from moderation.models import (
    AuditEvent,
    BannedSetChange,
    FingerprintVariant,
    FlaggedFingerprint,
    HashList,
    RefusedUpload,
)
from tests import images
from tests.helpers import ban_into_list as ban
from tests.helpers import run_command as run

pytestmark = pytest.mark.django_db





def banned_set_as_matching_sees_it() -> list[tuple]:
    """Every entry of the index, named by the flag's upright hash instead of its row id."""
    uprights = dict(FlaggedFingerprint.objects.values_list("pk", "dhash"))
    entries = banned_index.variant_entries(banned_set.active_variant_rows())
    return sorted(
        (uprights[key // banned_index.KEYS_PER_FLAG], key % banned_index.KEYS_PER_FLAG, *rest)
        for key, *rest in entries
    )


def empty_the_banned_set() -> None:
    """What a fresh site's database holds: no flags, lists, changes or audit rows."""
    RefusedUpload.objects.all().delete()
    AuditEvent.objects.all().delete()
    BannedSetChange.objects.all().delete()
    FingerprintVariant.objects.all().delete()
    FlaggedFingerprint.objects.all().delete()
    HashList.objects.all().delete()
    banned_set.reset()


@pytest.fixture
def two_lists():
    """A banned set with two lists, one with its own distance, one in shadow mode."""
    nudity = HashList.objects.create(name="nudity", max_distance=8)
    partner = HashList.objects.create(name="imported from partner X", mode="shadow")
    ban(images.photo(710), reason="first")
    ban(images.photo(711), hash_list=nudity, reason='second, with a comma, and "quotes"')
    ban(images.photo(712), hash_list=partner, reason="third")
    gone = ban(images.photo(713), reason="unflagged later")
    flagging.unflag_fingerprint(flagged=gone, reason="mistake")
    return nudity, partner


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_import_into_an_empty_site_reproduces_the_banned_set_exactly(
    fmt, two_lists, tmp_path
):
    before = banned_set_as_matching_sees_it()
    lists_before = sorted(HashList.objects.values_list("name", "max_distance", "enabled", "mode"))
    probe = fingerprint_image(images.photo(711))
    verdict_before = screening.check(probe)
    path = tmp_path / f"banned.{fmt}"
    run("export_fingerprints", "--format", fmt, "-o", str(path))

    empty_the_banned_set()
    assert banned_set_as_matching_sees_it() == []
    run("import_fingerprints", str(path))

    assert banned_set_as_matching_sees_it() == before
    lists_after = sorted(HashList.objects.values_list("name", "max_distance", "enabled", "mode"))
    # The default list is created by the first import that names it, like any other.
    assert lists_after == lists_before
    assert screening.check(probe).decision == verdict_before.decision


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_exported_flag_carries_its_verification_signal_into_the_import(fmt, tmp_path):
    flagged = ban(images.photo(712))
    signal = bytes(FlaggedFingerprint.objects.get(pk=flagged.pk).verification)
    assert signal
    path = tmp_path / f"banned.{fmt}"
    run("export_fingerprints", "--format", fmt, "-o", str(path))

    empty_the_banned_set()
    run("import_fingerprints", str(path))

    imported = FlaggedFingerprint.objects.active().get()
    assert bytes(imported.verification) == signal


def test_an_import_whose_verification_signal_is_not_one_imports_nothing(tmp_path):
    ban(images.photo(713))
    path = tmp_path / "banned.jsonl"
    run("export_fingerprints", "--format", "jsonl", "-o", str(path))
    row = json.loads(path.read_text())
    row["verification"] = base64.b64encode(b"not a signal").decode()
    path.write_text(json.dumps(row) + "\n")
    empty_the_banned_set()

    with pytest.raises(CommandError, match="verification signal is not valid"):
        run("import_fingerprints", str(path))
    assert not FlaggedFingerprint.objects.active().exists()


def test_importing_the_same_file_twice_changes_nothing(two_lists, tmp_path):
    path = tmp_path / "banned.jsonl"
    run("export_fingerprints", "-o", str(path))
    flags, changes = FlaggedFingerprint.objects.count(), BannedSetChange.objects.count()

    out = run("import_fingerprints", str(path))

    assert "Imported 0 fingerprints; 3 already banned." in out
    assert (FlaggedFingerprint.objects.count(), BannedSetChange.objects.count()) == (flags, changes)


def test_import_dry_run_writes_nothing(two_lists, tmp_path):
    path = tmp_path / "banned.csv"
    run("export_fingerprints", "--format", "csv", "-o", str(path))
    empty_the_banned_set()

    out = run("import_fingerprints", str(path), "--dry-run")

    assert "Would import 3 fingerprints; 0 already banned." in out
    assert not FlaggedFingerprint.objects.exists() and not HashList.objects.exists()


def test_export_of_one_list_holds_only_its_fingerprints(two_lists):
    out = run("export_fingerprints", "--list", "nudity")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["list"], r["reason"][:6]) for r in records] == [("nudity", "second")]


def test_export_csv_has_the_documented_columns(two_lists):
    out = run("export_fingerprints", "--format", "csv")
    rows = list(csv.DictReader(StringIO(out)))
    assert list(rows[0])[:5] == ["dhash", "list", "reason", "source", "created"]
    assert {"variants", "pipeline_version", "information"} <= set(rows[0])
    assert all(len(r["dhash"]) == 16 for r in rows)


def test_export_of_an_unknown_list_fails():
    with pytest.raises(CommandError, match="No hash list"):
        run("export_fingerprints", "--list", "nope")


def test_a_malformed_record_imports_nothing(two_lists, tmp_path):
    path = tmp_path / "banned.jsonl"
    run("export_fingerprints", "-o", str(path))
    lines = path.read_text().splitlines()
    empty_the_banned_set()
    broken = json.loads(lines[1])
    broken["variants"] = [[0, "zz", None]]
    path.write_text("\n".join([lines[0], json.dumps(broken)]) + "\n")

    with pytest.raises(CommandError, match="nothing was imported"):
        run("import_fingerprints", str(path))
    assert not FlaggedFingerprint.objects.exists()


def test_a_record_without_its_variants_is_named_with_its_line_and_imports_nothing(
    two_lists, tmp_path
):
    path = tmp_path / "banned.jsonl"
    run("export_fingerprints", "-o", str(path))
    lines = path.read_text().splitlines()
    empty_the_banned_set()
    bare = json.loads(lines[1])
    del bare["variants"]
    path.write_text("\n".join([lines[0], json.dumps(bare)]) + "\n")

    with pytest.raises(CommandError, match="line 2: the record has no 'variants' field"):
        run("import_fingerprints", str(path))
    assert not FlaggedFingerprint.objects.exists()


def test_an_imported_flag_takes_down_existing_matching_photos(
    django_user_model, tmp_path, django_capture_on_commit_callbacks
):
    from profiles.models import Profile
    from profiles.photos import profile_set_photo
    from profiles.services import profile_for

    scene = images.photo(720)
    ban(scene)
    path = tmp_path / "banned.jsonl"
    run("export_fingerprints", "-o", str(path))
    empty_the_banned_set()
    owner = django_user_model.objects.create_user(username="owner", password="pw")
    profile = profile_set_photo(profile=profile_for(user=owner), upload=images.upload(scene))

    with django_capture_on_commit_callbacks(execute=True):
        run("import_fingerprints", str(path))

    assert not Profile.objects.get(pk=profile.pk).photo


def test_export_selected_in_the_admin_downloads_those_fingerprints(moderator, two_lists):
    client = Client()
    client.force_login(moderator)
    chosen = FlaggedFingerprint.objects.get(hash_list__name="nudity")

    response = client.post(
        reverse("admin:moderation_flaggedfingerprint_changelist"),
        {"action": "export_selected", ACTION_CHECKBOX_NAME: [chosen.pk]},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(StringIO(response.content.decode())))
    assert [r["dhash"] for r in rows] == [chosen.hex]


# --- the banned set as PDQ, through an exchange file, into an empty site --------------------


def round_trip_probes() -> dict[str, bytes]:
    """Three banned and two innocent drawn photos, each as uploaded and as edited copies a PDQ
    list is known to catch (a re-encode, a resize, a mirror, a quarter turn) and one it is not
    (a 20% crop)."""
    from PIL import Image

    from moderation import evaluation

    edits = {
        "jpeg q60": lambda img: images.encode(img, "JPEG", quality=60),
        "resize 50%": lambda img: images.encode(images.resized(img, 0.5), "JPEG", quality=90),
        "mirror": lambda img: images.encode(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        "rotate 90°": lambda img: images.encode(img.transpose(Image.Transpose.ROTATE_270)),
        "crop 20%": lambda img: images.encode(evaluation._crop(img, 0.2), "JPEG", quality=90),
    }
    probes = {}
    for seed in (731, 732, 733, 741, 742):
        img = images.textured(images.photo(seed, (320, 240)), seed=seed)
        side = "banned" if seed < 740 else "innocent"
        probes[f"{side} {seed} original"] = images.encode(img, "PNG")
        for name, make in edits.items():
            probes[f"{side} {seed} {name}"] = make(img)
    return probes


def decisions_as_uploads(probes: dict[str, bytes]) -> dict[str, str]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return {
        name: screening.screen_as_upload(SimpleUploadedFile("p.jpg", data)).decision
        for name, data in probes.items()
    }


def test_the_banned_set_exported_as_pdq_decides_the_same_in_an_empty_site(tmp_path):
    """Export every orientation's PDQ with ``export_hashes --banned-set``, import the file into
    a site that holds nothing else with ``import_hashes``: the copies a PDQ list is known to
    catch are refused there as at home, innocent photos pass, and every decision equals what
    ``evaluate_matching --pdq-list`` computes for the same file held in memory (so the corpus
    measurement is the import path's). On PostgreSQL the import reads through COPY."""
    from moderation import evaluation, matching, pdq_evaluation, signal_set
    from moderation.models import SignalEntry

    probes = round_trip_probes()
    for seed in (731, 732, 733):
        img = images.textured(images.photo(seed, (320, 240)), seed=seed)
        ban(img)
    at_home = decisions_as_uploads(probes)
    path = tmp_path / "banned.pdq.txt"
    run("export_hashes", "--banned-set", "--every-orientation", "-o", str(path))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 * 8

    empty_the_banned_set()
    signal_set.reset()
    assert decisions_as_uploads(probes) == dict.fromkeys(probes, matching.PASS)
    run("import_hashes", str(path), "--list", "partner", "--source", "home site")
    assert SignalEntry.objects.active().count() == 3 * 8
    assert not FlaggedFingerprint.objects.exists()
    fresh = decisions_as_uploads(probes)

    caught = [n for n in probes if n.startswith("banned") and not n.endswith("crop 20%")]
    assert {n: fresh[n] for n in caught} == dict.fromkeys(caught, matching.BLOCK)
    assert {n: at_home[n] for n in caught} == dict.fromkeys(caught, matching.BLOCK)
    innocent = [n for n in probes if n.startswith("innocent")]
    assert {n: fresh[n] for n in innocent} == {n: at_home[n] for n in innocent}
    assert {fresh[n] for n in innocent} == {matching.PASS}
    crops = [n for n in probes if n.startswith("banned") and n.endswith("crop 20%")]
    assert {fresh[n] for n in crops} == {matching.PASS}, "PDQ does not survive a 20% crop"

    held = {
        "file": pdq_evaluation.PdqList.of(
            [(i, 0, line.split()[0]) for i, line in enumerate(lines, 1)],
            name="file",
            orientations=(0,),
        )
    }
    rule = matching.MatchRule.from_settings()
    in_memory = {
        name: evaluation.look_up(
            data, banned_index.BannedIndex(), rule, pdq_lists=held
        ).decision
        for name, data in probes.items()
    }
    assert fresh == in_memory
