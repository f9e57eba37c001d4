"""The lookup API over real HTTP (a live server, real tokens): hashing, raw lookup, lookup of
a hash and of an uploaded file, compare and index status, in HMA's shapes; the lookup of a
file gets the decision an upload of it gets, and stores and counts nothing."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command

from moderation import pdq, signal_lists, signals
from moderation.api import tokens
from moderation.models import (
    ApiToken,
    HashList,
    RefusedUpload,
    ReviewItem,
    SignalChange,
    SignalEntry,
)
from tests import images
from tests.api_client import call, post_file, post_json
from tests.helpers import ban

pytestmark = pytest.mark.django_db(transaction=True)

# HMA's own test specimens (OpenMediaMatch/tests/test_api.py): 9 bits apart.
SPECIMEN_1 = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"
SPECIMEN_2 = "facd8bcb2a49bcebdec1985228d5ae84bcd006c187c598c720c2b087b3fdb318"


@pytest.fixture
def api(live_server) -> str:
    return live_server.url + "/api"


@pytest.fixture
def secret() -> str:
    return tokens.token_issue(name="chat-attachments", actor=None).secret


def png(img) -> bytes:
    return images.upload(img, "me.png", "PNG").read()


def pdq_of(img) -> str:
    return signals.file_hashes(io.BytesIO(png(img))).pdq


def flip(hex_value: str, bits: int) -> str:
    """``hex_value`` with its first ``bits`` bits inverted (exactly ``bits`` bits away)."""
    value = int(hex_value, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


def entry(name: str, kind: str, value: str, **fields) -> SignalEntry:
    hash_list, _ = HashList.objects.get_or_create(
        name=name, defaults={"mode": fields.pop("mode", HashList.Mode.ENFORCE)}
    )
    return signal_lists.entry_add(hash_list=hash_list, signal_type=kind, value=value, **fields)


# --- hashing ----------------------------------------------------------------------------------


def test_hash_returns_every_signal_of_the_uploaded_file_as_the_signals_service_does(api, secret):
    data = png(images.photo(401))
    reply = post_file(api, "/h/hash", data, token=secret)
    assert (reply.status, reply.content_type) == (200, "application/json")
    assert reply.json == signals.hash_file(data)
    assert reply.json["md5"] == hashlib.md5(data).hexdigest()


def test_hash_returns_only_the_signal_types_asked_for(api, secret):
    data = png(images.photo(402))
    reply = post_file(api, "/h/hash", data, token=secret, query="?types=pdq,video_md5")
    assert reply.json == {
        "pdq": signals.hash_file(data)["pdq"],
        "md5": hashlib.md5(data).hexdigest(),
    }


# --- raw lookup -------------------------------------------------------------------------------


def test_raw_lookup_finds_a_listed_pdq_within_the_lists_distance_and_not_beyond(api, secret):
    listed = entry("partner", "pdq", pdq_of(images.photo(403)))
    near, far = flip(listed.value, 10), flip(listed.value, 40)

    def raw(signal, extra=""):
        return call(
            api, "GET", f"/m/raw_lookup?signal_type=pdq&signal={signal}{extra}", token=secret
        )

    assert raw(near).json == {"matches": [listed.pk]}
    assert raw(near, "&include_distance=true").json == {
        "matches": [
            {"bank_content_id": listed.pk, "distance": "10", "bank": "partner", "outcome": "block"}
        ]
    }
    assert raw(far).json == {"matches": []}


def test_raw_lookup_keeps_only_the_banks_asked_for(api, secret):
    value = pdq_of(images.photo(404))
    ours, theirs = entry("ours", "pdq", value), entry("theirs", "pdq", value)

    def raw(banks):
        return call(
            api, "GET", f"/m/raw_lookup?signal_type=pdq&signal={value}&banks={banks}", token=secret
        ).json["matches"]

    assert sorted(raw("ours,theirs")) == sorted([ours.pk, theirs.pk])
    assert raw("theirs") == [theirs.pk]
    assert raw("nobody") == []


def test_raw_lookup_of_a_byte_hash_is_exact_and_case_insensitive(api, secret):
    digest = hashlib.md5(b"some file").hexdigest()
    listed = entry("exact", "md5", digest)
    other = hashlib.md5(b"another file").hexdigest()
    path = "/m/raw_lookup?signal_type=video_md5&signal="
    assert call(api, "GET", path + digest.upper(), token=secret).json == {"matches": [listed.pk]}
    assert call(api, "GET", path + other, token=secret).json == {"matches": []}


# --- lookup -----------------------------------------------------------------------------------


def test_lookup_of_a_hash_groups_matches_by_list_and_leaves_out_shadow_lists(api, secret):
    value = pdq_of(images.photo(405))
    enforced = entry("partner", "pdq", value)
    entry("trial", "pdq", value, mode=HashList.Mode.SHADOW)
    reply = call(api, "GET", f"/m/lookup?signal_type=pdq&signal={value}", token=secret)
    assert reply.json == {
        "partner": [
            {"bank_content_id": enforced.pk, "distance": "0", "bank": "partner", "outcome": "block"}
        ]
    }
    assert reply.headers["x-moderation-decision"] == "block"


def test_lookup_keeps_only_the_banks_asked_for_but_decides_over_every_list(api, secret):
    value = pdq_of(images.photo(407))
    entry("partner", "pdq", value)
    theirs = entry("theirs", "pdq", value, quality=pdq.MIN_QUALITY - 1)
    path = f"/m/lookup?signal_type=pdq&signal={value}&banks=theirs"
    reply = call(api, "GET", path, token=secret)
    assert reply.json == {
        "theirs": [
            {"bank_content_id": theirs.pk, "distance": "0", "bank": "theirs", "outcome": "review"}
        ]
    }
    assert reply.headers["x-moderation-decision"] == "block"


def test_lookup_of_a_hash_only_in_a_shadow_list_finds_nothing_and_passes(api, secret):
    value = pdq_of(images.photo(406))
    entry("trial", "pdq", value, mode=HashList.Mode.SHADOW)
    reply = call(api, "GET", f"/m/lookup?signal_type=pdq&signal={value}", token=secret)
    assert (reply.json, reply.headers["x-moderation-decision"]) == ({}, "pass")


def _listed_pdq(img):
    entry("partner", "pdq", pdq_of(img))


def _low_quality_pdq(img):
    entry("partner", "pdq", pdq_of(img), quality=pdq.MIN_QUALITY - 1)


def _shadow_pdq(img):
    entry("trial", "pdq", pdq_of(img), mode=HashList.Mode.SHADOW)


def _flagged(img):
    ban(img)


def _exact_md5(img):
    entry("exact", "md5", hashlib.md5(png(img)).hexdigest())


def _nothing(img):
    pass


def _site_decision(upload, img) -> str:
    """What the site's own upload form did with ``img``: block, review or pass."""
    response = upload(img)
    if RefusedUpload.objects.exists():
        assert response.status_code == 200  # the form, with its generic error
        return "block"
    assert response.status_code == 302
    return "review" if ReviewItem.objects.exists() else "pass"


@pytest.mark.parametrize(
    ("listing", "seed", "expected"),
    [
        (_listed_pdq, 411, "block"),
        (_low_quality_pdq, 412, "review"),
        (_shadow_pdq, 413, "pass"),
        (_flagged, 414, "block"),
        (_exact_md5, 415, "block"),
        (_nothing, 416, "pass"),
    ],
)
def test_lookup_of_an_uploaded_file_gets_the_decision_an_upload_of_it_gets(
    api, secret, upload, listing, seed, expected
):
    img = images.textured(images.photo(seed), seed=seed)
    listing(img)

    reply = post_file(api, "/m/lookup", png(img), token=secret)

    assert reply.status == 200
    assert set(reply.json) == {"pdq", "md5", "sha256", "dhash"}
    assert reply.headers["x-moderation-decision"] == expected
    assert _site_decision(upload, img) == expected


def test_lookup_of_an_uploaded_file_names_the_list_and_signal_that_matched(api, secret):
    img = images.textured(images.photo(417), seed=3)
    flag = ban(img)
    listed = entry("partner", "pdq", pdq_of(img))

    found = post_file(api, "/m/lookup", png(img), token=secret).json

    assert [m["bank_content_id"] for m in found["pdq"]["partner"]] == [listed.pk]
    assert [m["bank_content_id"] for m in found["dhash"][flag.hash_list.name]] == [flag.pk]
    assert found["md5"] == found["sha256"] == {}


def test_lookup_of_an_uploaded_file_stores_nothing_and_counts_no_match(
    api, secret, media_files, quarantine_files
):
    img = images.textured(images.photo(418), seed=4)
    listed = entry("partner", "pdq", pdq_of(img))
    before = (media_files(), quarantine_files())

    for path in ("/m/lookup", "/h/hash"):
        assert post_file(api, path, png(img), token=secret).status == 200

    assert (media_files(), quarantine_files()) == before
    listed.refresh_from_db()
    assert listed.times_matched == 0
    assert not RefusedUpload.objects.exists()


# --- compare and index status -----------------------------------------------------------------


def test_compare_gives_hmas_answer_for_hmas_own_specimens(api, secret):
    reply = post_json(api, "/m/compare", {"pdq": [SPECIMEN_1, SPECIMEN_2]}, token=secret)
    assert reply.json == {"pdq": [True, {"distance": 9}]}


def test_compare_answers_each_pair_under_its_types_threshold(api, secret):
    far = flip(SPECIMEN_1, 32)
    digest = hashlib.sha256(b"x").hexdigest()
    reply = post_json(
        api,
        "/m/compare",
        {"pdq": [SPECIMEN_1, far], "sha256": [digest, digest.upper()]},
        token=secret,
    )
    assert reply.json == {"pdq": [False, {"distance": 32}], "sha256": [True, {"distance": 0}]}


def test_index_status_counts_the_entries_in_force_per_signal_type(api, secret):
    entry("partner", "pdq", pdq_of(images.photo(421)))
    entry("partner", "pdq", pdq_of(images.photo(422)))
    retracted = entry("partner", "pdq", pdq_of(images.photo(423)))
    signal_lists.entry_retract(entry=retracted)
    entry("exact", "md5", hashlib.md5(b"a").hexdigest())

    status = call(api, "GET", "/m/index/status", token=secret).json

    assert {kind: s["size"] for kind, s in status.items()} == {
        "pdq": 2,
        "md5": 1,
        "sha256": 0,
        "dhash": 0,
    }
    assert all(s["present"] is True for s in status.values())
    only = call(api, "GET", "/m/index/status?signal_type=pdq", token=secret).json
    assert list(only) == ["pdq"] and only["pdq"]["size"] == 2


def test_index_status_says_when_the_last_change_each_index_holds_was_made(api, secret, tmp_path):
    """Entries added one by one and by an import (one change for the whole file) alike."""
    empty = call(api, "GET", "/m/index/status", token=secret).json
    assert {kind: s["built_to"] for kind, s in empty.items()} == dict.fromkeys(empty, -1)

    listing = tmp_path / "partner.txt"
    listing.write_text(f"{pdq_of(images.photo(424))}\n{pdq_of(images.photo(425))}\n")
    call_command("import_hashes", str(listing), "--list", "partner", verbosity=0)
    last = SignalChange.objects.latest("pk")

    status = call(api, "GET", "/m/index/status", token=secret).json

    assert status["pdq"]["size"] == 2
    assert status["pdq"]["built_to"] == int(last.created_at.timestamp())
    assert status["md5"]["built_to"] == int(last.created_at.timestamp())
    assert status["dhash"]["built_to"] == -1


def test_a_call_marks_its_token_used(api, secret):
    assert ApiToken.objects.get().last_used_at is None
    call(api, "GET", "/m/index/status", token=secret)
    assert ApiToken.objects.get().last_used_at is not None
