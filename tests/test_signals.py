"""The signal service: hashing a file into every signal, looking a hash up under the upload
rule, comparing hashes, and the errors a caller gets for bad input."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.db import transaction
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

from moderation import pdq, signals
from moderation.banned_set import lock_banned_set
from moderation.hashing import fingerprint
from moderation.models import HashList, SignalEntry, SignalType
from moderation.signal_set import log_entry, log_signal_list
from moderation.variants import VARIANTS
from tests import images
from tests.helpers import encoded

pytestmark = pytest.mark.django_db


def _flip(hex_value: str, bits: int) -> str:
    """``hex_value`` with its first ``bits`` bits inverted (exactly ``bits`` bits away)."""
    value = int(hex_value, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


def add_entry(hash_list, signal_type, value, **fields) -> SignalEntry:
    with transaction.atomic():
        lock_banned_set()
        entry = SignalEntry.objects.create(
            hash_list=hash_list, signal_type=signal_type, value=value, **fields
        )
        log_entry(entry)
    return entry


def test_hash_file_gives_every_signal_from_the_file_and_its_pixels():
    data = encoded(images.photo(3))
    hashes = signals.file_hashes(io.BytesIO(data))
    assert hashes.md5 == hashlib.md5(data).hexdigest()
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.dhash == fingerprint(io.BytesIO(data)).hex
    assert len(hashes.pdq) == 64 and 0 <= hashes.pdq_quality <= 100
    assert signals.hash_file(io.BytesIO(data)) == {
        "pdq": hashes.pdq,
        "md5": hashes.md5,
        "sha256": hashes.sha256,
        "dhash": hashes.dhash,
    }


def test_the_pdq_of_a_full_size_image_is_threatexchanges_own(tmp_path):
    """A partner hashing the same file with python-threatexchange gets the same hex and
    quality (this scene's is low: 46, so its PdqSignal would not even return the hash)."""
    path = tmp_path / "scene.png"
    path.write_bytes(encoded(images.photo(5)))
    ours = signals.file_hashes(path.read_bytes())
    assert (ours.pdq, ours.pdq_quality) == pdq_from_file(path)


def test_the_pdq_of_a_grey_image_is_threatexchanges_own(tmp_path):
    """A grey picture (what a JPEG's luma-only decode gives) is handed to pdqhash as one
    channel seen three times; a partner's threatexchange reads the file as RGB and gets the
    same hex and quality."""
    path = tmp_path / "grey.png"
    path.write_bytes(encoded(images.photo(5).convert("L")))
    ours = signals.file_hashes(path.read_bytes())
    assert (ours.pdq, ours.pdq_quality) == pdq_from_file(path)


def test_a_pdq_entry_matches_within_its_lists_pdq_distance_and_not_beyond():
    hash_list = HashList.objects.create(name="partner", pdq_distance=20)
    value = signals.file_hashes(encoded(images.photo(7))).pdq
    entry = add_entry(hash_list, SignalType.PDQ, value, source="exchange")
    [match] = signals.lookup("pdq", _flip(value, 20))
    assert (match.entry_id, match.list_name, match.distance, match.blocks) == (
        entry.pk,
        "partner",
        20,
        True,
    )
    assert signals.lookup("pdq", _flip(value, 21)) == []


def test_a_shadow_list_match_is_reported_and_blocks_nothing():
    hash_list = HashList.objects.create(name="trial", mode=HashList.Mode.SHADOW)
    value = "ab" * 32
    add_entry(hash_list, SignalType.PDQ, value)
    [match] = signals.lookup("pdq", value)
    assert match.outcome == signals.SHADOW and not match.blocks


def test_a_low_quality_pdq_match_sends_to_review_instead_of_blocking():
    hash_list = HashList.objects.create(name="partner")
    value = "cd" * 32
    add_entry(hash_list, SignalType.PDQ, value)
    [weak] = signals.lookup("pdq", value, quality=pdq.MIN_QUALITY - 1)
    [strong] = signals.lookup("pdq", value, quality=pdq.MIN_QUALITY)
    assert (weak.outcome, strong.outcome) == (signals.REVIEW, signals.BLOCK)


def test_md5_and_sha256_entries_match_only_the_same_bytes():
    hash_list = HashList.objects.create(name="exact")
    data = encoded(images.photo(9))
    add_entry(hash_list, SignalType.MD5, hashlib.md5(data).hexdigest())
    add_entry(hash_list, SignalType.SHA256, hashlib.sha256(data).hexdigest())
    assert [m.signal_type for m in signals.lookup("video_md5", hashlib.md5(data).hexdigest())] == [
        "md5"
    ]
    assert len(signals.lookup("sha256", hashlib.sha256(data).hexdigest())) == 1
    assert signals.lookup("md5", hashlib.md5(data + b"\0").hexdigest()) == []


def test_a_list_switched_off_matches_nothing_from_the_next_lookup():
    hash_list = HashList.objects.create(name="partner")
    value = "ef" * 32
    add_entry(hash_list, SignalType.PDQ, value)
    assert signals.lookup("pdq", value)
    with transaction.atomic():
        lock_banned_set()
        HashList.objects.filter(pk=hash_list.pk).update(enabled=False)
        log_signal_list(hash_list)
    assert signals.lookup("pdq", value) == []


@pytest.mark.parametrize(
    ("signal_type", "value", "message"),
    [
        ("photodna", "00" * 32, "unknown signal type"),
        ("pdq", "00" * 31, "64 hex digits"),
        ("pdq", "zz" * 32, "hex digits"),
        ("md5", "00" * 32, "32 hex digits"),
    ],
)
def test_a_bad_signal_type_or_hash_raises_one_error_type_saying_what_is_wrong(
    signal_type, value, message
):
    with pytest.raises(signals.SignalError, match=message):
        signals.lookup(signal_type, value)


def test_compare_gives_the_distance_and_the_pdq_match_line():
    a = "00" * 32
    assert signals.compare("pdq", a, _flip(a, 31)).match
    assert not signals.compare("pdq", a, _flip(a, 32)).match
    assert signals.compare("pdq", a, _flip(a, 32)).distance == 32


def test_hashing_a_file_that_is_not_an_image_raises_the_signal_error():
    with pytest.raises(signals.SignalError):
        signals.hash_file(b"not an image at all")


def test_index_status_counts_the_entries_of_each_signal_type():
    hash_list = HashList.objects.create(name="partner")
    add_entry(hash_list, SignalType.PDQ, "12" * 32)
    add_entry(hash_list, SignalType.MD5, "34" * 16)
    status = signals.index_status()
    assert (status["pdq"]["size"], status["md5"]["size"], status["sha256"]["size"]) == (1, 1, 0)


def test_the_dihedral_pdqs_are_the_pdqs_of_the_turned_and_mirrored_pictures():
    img = images.photo(11, size=(320, 240))
    turned = pdq.dihedral_of_image(img)
    for number, variant in enumerate(VARIANTS[:8]):
        view = img if variant.transpose is None else img.transpose(variant.transpose)
        assert turned[number] == pdq.pdq_of_image(view), variant.label
    assert len({p.hex for p in turned}) == 8
