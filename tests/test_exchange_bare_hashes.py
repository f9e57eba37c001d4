"""Importing bare hashes: flags without a verification signal refuse uploads on the dHash + pHash
rule alone, which collides with ordinary photos at scale, so ``import_fingerprints`` says what
an enforcing list of them would refuse, and can import them in shadow mode instead."""

from __future__ import annotations

import base64
import random
from io import StringIO

import pytest
from django.core.management import call_command

from moderation import exchange
from moderation.models import FlaggedFingerprint, HashList
from moderation.verification import flag_signal_of
from tests import images

pytestmark = pytest.mark.django_db

# The smallest number of rule-alone flags whose estimated refusals reach the warning's line.
AT_THE_LINE = next(
    n for n in range(1, 10_000) if exchange.share_refused_by_rule_alone(n) >= exchange.WARN_AT_SHARE
)


def bare_records(count: int, *, list_name="partner list", verification="") -> list:
    rng = random.Random(count)
    records = []
    for _ in range(count):
        dhash, phash = (f"{rng.getrandbits(64):016x}" for _ in range(2))
        records.append(
            exchange.FingerprintRecord(
                dhash=dhash,
                list=list_name,
                reason="from a partner",
                source=FlaggedFingerprint.Source.COMMAND,
                created="2026-01-01T00:00:00+00:00",
                pipeline_version=8,
                information=40,
                variants=((0, dhash, phash),),
                verification=verification,
            )
        )
    return records


def import_file(tmp_path, records, *args) -> tuple[str, str]:
    path = tmp_path / "list.jsonl"
    with path.open("w", encoding="utf-8") as out:
        exchange.write(records, out, "jsonl")
    out, err = StringIO(), StringIO()
    call_command("import_fingerprints", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_line_is_where_a_few_hundred_rule_alone_flags_refuse_one_upload_in_a_hundred():
    assert 300 < AT_THE_LINE < 400
    assert exchange.share_refused_by_rule_alone(700_000) > 0.99


def test_a_dry_run_of_bare_hashes_into_an_enforcing_list_says_what_share_of_uploads_they_refuse(
    tmp_path,
):
    out, err = import_file(tmp_path, bare_records(AT_THE_LINE), "--dry-run")

    assert f"Would import {AT_THE_LINE} fingerprints" in out
    assert f"{AT_THE_LINE} of these fingerprints carry no verification signal" in err
    assert "about 1.0% of ordinary uploads refused" in err
    assert "--mode shadow" in err
    assert not FlaggedFingerprint.objects.exists()


def test_fewer_bare_hashes_than_the_line_import_without_a_warning(tmp_path):
    out, err = import_file(tmp_path, bare_records(AT_THE_LINE - 1), "--dry-run")

    assert f"Would import {AT_THE_LINE - 1} fingerprints" in out
    assert err == ""


def test_bare_hashes_already_enforced_on_the_site_count_towards_the_line(tmp_path):
    import_file(tmp_path, bare_records(AT_THE_LINE - 1, list_name="earlier list"))

    _, err = import_file(tmp_path, bare_records(1, list_name="one more"))

    assert "1 of these fingerprints carry no verification signal" in err
    assert f"With them, {AT_THE_LINE} enforced flags" in err


def test_the_same_bare_hashes_imported_in_shadow_mode_are_not_warned_about(tmp_path):
    _, err = import_file(tmp_path, bare_records(AT_THE_LINE), "--dry-run", "--mode", "shadow")

    assert err == ""


def test_records_that_carry_a_verification_signal_are_not_counted_as_bare(tmp_path):
    signed = base64.b64encode(flag_signal_of(images.photo(721))).decode()

    _, err = import_file(tmp_path, bare_records(AT_THE_LINE, verification=signed), "--dry-run")

    assert err == ""


def test_mode_sets_the_mode_of_a_list_the_import_creates_and_leaves_an_existing_list_alone(
    tmp_path,
):
    HashList.objects.create(name="ours", mode=HashList.Mode.ENFORCE)

    import_file(tmp_path, bare_records(2, list_name="theirs"), "--mode", "shadow")
    import_file(tmp_path, bare_records(3, list_name="ours"), "--mode", "shadow")

    assert HashList.objects.get(name="theirs").mode == HashList.Mode.SHADOW
    assert HashList.objects.get(name="ours").mode == HashList.Mode.ENFORCE
    assert FlaggedFingerprint.objects.filter(hash_list__name="theirs").count() == 2
