"""Sweeping's impact preview: the "Flag selected photos" confirmation says what else goes."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from moderation import banned_index, hash_columns, matching, sweeping
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import images

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_profile(django_user_model):
    def make(username: str, img) -> Profile:
        user = django_user_model.objects.create_user(username=username, password="pw")
        profile = profile_set_photo(profile=profile_for(user=user), upload=images.upload(img))
        return Profile.objects.get(pk=profile.pk)

    return make


def confirmation_page(moderator, *profiles) -> str:
    client = Client()
    client.force_login(moderator)
    response = client.post(
        reverse("admin:profiles_profile_changelist"),
        {"action": "flag_selected_photos", ACTION_CHECKBOX_NAME: [p.pk for p in profiles]},
    )
    assert response.status_code == 200
    return response.content.decode()


def test_the_confirmation_counts_the_other_photos_the_flag_would_take_down(make_profile, moderator):
    scene = images.photo(901)
    chosen = make_profile("chosen", scene)
    copy = make_profile("copy", images.resized(scene, 0.5))
    mirrored = make_profile("mirror", scene.transpose(0))  # FLIP_LEFT_RIGHT
    make_profile("unrelated", images.photo(902))

    html = confirmation_page(moderator, chosen)

    assert "This flag will also take down 2 other profile photos." in html
    assert copy.photo.url in html and mirrored.photo.url in html
    assert "distance 0" in html


def test_the_preview_lists_the_nearest_first_and_no_more_than_the_limit(make_profile):
    scene = images.photo(903)
    chosen = make_profile("chosen", scene)
    near = make_profile("near", images.at_distance(scene, 3, seed=1))
    exact = make_profile("exact", scene)

    preview = sweeping.preview_flag_impact(instances=[chosen], limit=1)

    assert preview.count == 2
    assert [(p.pk, d) for p, d in preview.nearest] == [(exact.pk, 0)]
    assert near.pk != exact.pk


def test_the_confirmation_says_when_nothing_else_matches(make_profile, moderator):
    chosen = make_profile("chosen", images.photo(904))
    make_profile("unrelated", images.photo(905))

    html = confirmation_page(moderator, chosen)

    assert "No other profile photo matches" in html


def test_the_preview_changes_nothing(make_profile, moderator):
    scene = images.photo(906)
    chosen = make_profile("chosen", scene)
    copy = make_profile("copy", scene)

    confirmation_page(moderator, chosen)

    assert Profile.objects.get(pk=chosen.pk).photo and Profile.objects.get(pk=copy.pk).photo
    from moderation.models import FlaggedFingerprint

    assert not FlaggedFingerprint.objects.exists()


# --- the vectorised comparison equals the index's rule ----------------------------------------


def _flip(value: int, bits: int, rng) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


@pytest.mark.parametrize("list_distance", [None, 6, 14])
def test_the_vectorised_preview_decides_every_photo_as_the_index_rule_does(list_distance):
    """The columns' XOR + popcount gives, for each stored image, exactly what a
    ``BannedIndex`` of the selected variants says for it and its stored probes (cuts compared
    with their own variant, the framed picture with every variant): blocked or not, and at
    what distance."""
    import random

    from moderation.hashing import Fingerprint, probes_from_bytes, to_signed
    from moderation.probes import pack_probes
    from moderation.variants import UPLOAD_CUTS

    rng = random.Random(7)
    numbers = [0, 1, *UPLOAD_CUTS]
    entries = []
    for n in range(12):
        phash = None if n % 5 == 4 else rng.getrandbits(64)
        entries.append(
            (numbers[n % len(numbers)], Fingerprint(rng.getrandbits(64), phash=phash), n % 7 == 6)
        )

    def near(base: Fingerprint, pk: int) -> tuple[int, int | None]:
        dhash = _flip(base.dhash, rng.randrange(0, 20), rng)
        phash = None if pk % 11 == 0 else _flip(base.phash or 0, rng.randrange(0, 30), rng)
        return to_signed(dhash), None if phash is None else to_signed(phash)

    rows = []
    for pk in range(3000):
        _n, base, _low = entries[pk % len(entries)]
        probes = []
        if pk % 3:  # two of three images store probes: its cuts, and for some a framed picture
            other = entries[(pk * 7) % len(entries)][1]
            probes = [[number, *near(other, pk)] for number in UPLOAD_CUTS]
            if pk % 2:
                probes.append([None, *near(entries[(pk * 5) % len(entries)][1], pk)])
        rows.append((pk, *near(base, pk), pack_probes(probes)))
    rule = matching.MatchRule.from_settings()
    policy = banned_index.list_policy(list_distance, False)
    index = banned_index.BannedIndex()
    for i, (number, fp, low) in enumerate(entries):
        index.add(banned_index.entry_key(i, number), fp.dhash, fp.phash, low, policy)

    pks, nearest = hash_columns.HashColumns.load(rows).nearest_matches(
        entries, rule=rule, list_distance=list_distance
    )

    expected, by_probe_only = [], 0
    for _pk, dhash, phash, probes in rows:
        cuts, inner = probes_from_bytes(probes)
        fp = Fingerprint.from_signed(dhash, phash=phash)
        verdict = index.check(fp, rule, cuts=cuts, inner=inner)
        expected.append(verdict.nearest.distance if verdict.blocked else -1)
        by_probe_only += verdict.blocked and not index.check(fp, rule).blocked
    assert pks.tolist() == list(range(3000))
    assert nearest.tolist() == expected
    assert 100 < sum(d >= 0 for d in expected) < 2900  # both outcomes are exercised
    assert by_probe_only > 20  # and images that only their probes block


def test_a_stored_photo_whose_hashes_only_collide_with_the_selected_one_is_not_counted(
    make_profile,
):
    """The preview verifies what the hashes find, as the sweep will: a different picture that
    carries the selected photo's hashes (a chance collision) would not be taken down."""

    def scene(seed: int):  # textured, and cut above the "scene N" line the drawings share
        picture = images.textured(images.photo(seed), seed=seed)
        return picture.crop((0, 0, picture.width, picture.height * 3 // 4))

    chosen = make_profile("chosen", scene(905))
    other = make_profile("other", scene(906))
    copy = make_profile("copy", images.recompressed(scene(905), 60))
    Profile.objects.filter(pk=other.pk).update(
        photo_dhash=chosen.photo_dhash, photo_phash=chosen.photo_phash, photo_probes=b""
    )

    preview = sweeping.preview_flag_impact(instances=[chosen])

    assert preview.count == 1
    assert [instance.pk for instance, _ in preview.nearest] == [copy.pk]
