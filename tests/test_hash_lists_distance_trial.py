"""Shadow-testing a changed distance on an enforcing hash list.

A moderator puts a proposed distance on trial: nothing changes for users, and each accepted
upload that the proposed distance would block or queue (and the enforced one does not) is
recorded, labelled "would be blocked at proposed distance N". One action enforces it, another
discards it; both audited. The trial is decided from the candidates of the one lookup.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from moderation import banned_set, desk, hash_lists, matching, screening
from moderation.fingerprint_index import FingerprintIndex
from moderation.hashing import fingerprint_image
from moderation.models import AuditEvent, HashList, RefusedUpload, ReviewItem, ShadowHit
from profiles.models import Profile
from tests import images
from tests.helpers import ban

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("narrow_distances")]


@pytest.fixture
def scene(settings):
    """A banned scene, a copy 7 dHash bits away blemished in the middle (so that its centre and
    caption band, which the upload path compares too, are no match either), and a copy."""
    original = images.photo(860)
    near = images.near_miss(original, beyond=settings.MODERATION_MAX_DISTANCE)
    flagged = ban(original)
    return {
        "flagged": flagged,
        "list": flagged.hash_list,
        "near": near,
        "copy": images.resized(original, 0.5),
    }


def trial_url(hash_list) -> str:
    return reverse("admin:moderation_hashlist_trial", args=[hash_list.pk])


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def list_editor(moderator):
    """The conftest moderator holds every moderation permission, change_hashlist included."""
    assert moderator.has_perm("moderation.change_hashlist")
    return moderator


# --- what a trial records ---------------------------------------------------------------------


def test_a_proposed_distance_changes_nothing_for_the_upload(scene, upload, user):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)

    response = upload(scene["near"])

    assert response.status_code == 302 and Profile.objects.get(user=user).photo
    assert not RefusedUpload.objects.exists()
    assert ReviewItem.objects.get().fingerprint == scene["flagged"]  # queued, as before


def test_an_upload_the_proposed_distance_would_block_is_recorded_and_labelled(
    scene, upload, user
):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)

    upload(scene["near"])

    hit = ShadowHit.objects.get()
    assert (hit.kind, hit.outcome, hit.hash_list, hit.fingerprint, hit.uploader) == (
        ShadowHit.Kind.DISTANCE,
        ShadowHit.Outcome.BLOCK,
        scene["list"],
        scene["flagged"],
        user,
    )
    assert (hit.proposed_distance, hit.enforced_distance) == (8, 4)
    assert 4 < hit.distance <= 8
    assert hit.label == "would be blocked at proposed distance 8"


def test_an_upload_both_distances_block_is_refused_and_not_recorded(scene, upload):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)

    response = upload(scene["copy"])

    assert response.status_code == 200 and RefusedUpload.objects.count() == 1
    assert not ShadowHit.objects.exists()


def test_an_upload_neither_distance_catches_records_nothing(scene, upload):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)
    upload(images.photo(861))
    assert not ShadowHit.objects.exists()


def test_a_narrower_proposal_records_nothing_for_uploads_it_would_let_through(scene, upload):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=2)
    upload(scene["near"])
    assert not ShadowHit.objects.exists()


def test_an_allowed_image_is_not_recorded_by_a_trial(scene, upload, moderator):
    upload(scene["near"])
    desk.review_dismiss(item=ReviewItem.objects.get(), actor=moderator)
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)

    upload(scene["near"])

    assert not ShadowHit.objects.exists()


def test_the_trial_is_decided_from_the_one_index_lookup(scene, monkeypatch):
    fp = fingerprint_image(scene["near"])
    screening.check(fp)  # warm
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)
    calls = []
    original = FingerprintIndex.query_positions  # every query goes through it (query_arrays too)

    def counted(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FingerprintIndex, "query_positions", counted)

    verdict = screening.check(fp)

    assert len(calls) == 1
    assert [(t.outcome, t.match.proposed_distance) for t in verdict.trial] == [("block", 8)]
    assert verdict.decision == matching.REVIEW  # unchanged


def test_a_proposal_reaches_a_warm_index_at_its_next_lookup(scene):
    fp = fingerprint_image(scene["near"])
    assert screening.check(fp).trial == []
    index = banned_set.current()._index

    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)

    assert [t.outcome for t in screening.check(fp).trial] == ["block"]
    assert banned_set.current()._index is index  # replayed from the change log, not reloaded


# --- promote, discard, refuse -----------------------------------------------------------------


def test_enforcing_the_proposal_blocks_from_the_next_upload_and_is_audited(
    scene, upload, moderator
):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8, actor=moderator)

    hash_lists.hash_list_promote_distance(hash_list=scene["list"], actor=moderator)

    hash_list = HashList.objects.get(pk=scene["list"].pk)
    assert (hash_list.max_distance, hash_list.proposed_distance) == (8, None)
    assert upload(scene["near"]).status_code == 200  # refused now
    assert RefusedUpload.objects.count() == 1
    actions = list(
        AuditEvent.objects.filter(actor=moderator).order_by("id").values_list("action", "reason")
    )
    assert actions == [
        ("propose", "distance 8 on trial (enforced: 4)"),
        ("promote", "distance 8 enforced (was 4)"),
    ]


def test_discarding_keeps_the_enforced_distance_and_the_hits_and_is_audited(
    scene, upload, moderator
):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8, actor=moderator)
    upload(scene["near"])

    hash_lists.hash_list_discard_distance(hash_list=scene["list"], actor=moderator)

    hash_list = HashList.objects.get(pk=scene["list"].pk)
    assert (hash_list.max_distance, hash_list.proposed_distance) == (None, None)
    assert ShadowHit.objects.count() == 1  # the record stays
    assert screening.check(fingerprint_image(scene["near"])).trial == []
    assert AuditEvent.objects.filter(action="discard", actor=moderator).exists()


@pytest.mark.parametrize(
    ("distance", "code"), [(11, "distance"), (4, "same_distance"), (-1, "distance")]
)
def test_a_proposal_out_of_range_or_equal_to_the_enforced_distance_is_refused(
    scene, distance, code
):
    with pytest.raises(ValidationError) as refused:
        hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=distance)
    assert refused.value.code == code
    assert HashList.objects.get(pk=scene["list"].pk).proposed_distance is None


@pytest.mark.parametrize("state", [{"enabled": False}, {"mode": "shadow"}])
def test_only_an_enforcing_list_that_is_on_can_try_a_distance(scene, state):
    policy = {"max_distance": None, "enabled": True, "mode": "enforce", **state}
    hash_lists.hash_list_update(hash_list=scene["list"], **policy)
    with pytest.raises(ValidationError) as refused:
        hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)
    assert refused.value.code == "not_enforcing"


def test_promoting_or_discarding_without_a_trial_is_refused(scene):
    for service in (hash_lists.hash_list_promote_distance, hash_lists.hash_list_discard_distance):
        with pytest.raises(ValidationError) as refused:
            service(hash_list=scene["list"])
        assert refused.value.code == "no_trial"


# --- the admin --------------------------------------------------------------------------------


def test_a_moderator_tries_a_distance_reads_the_hits_and_enforces_it_in_the_admin(
    scene, upload, list_editor
):
    client = client_for(list_editor)
    change = client.get(reverse("admin:moderation_hashlist_change", args=[scene["list"].pk]))
    assert trial_url(scene["list"]) in change.content.decode()  # "Try a distance"

    response = client.post(trial_url(scene["list"]), {"do": "propose", "distance": "8"})
    assert response.status_code == 302
    upload(scene["near"])
    page = client.get(trial_url(scene["list"])).content.decode()
    assert "Distance 8 is on trial" in page
    assert "would be blocked at proposed distance 8" in page
    assert "1 accepted upload would have been caught at distance 8" in page
    hits = client.get(reverse("admin:moderation_shadowhit_changelist"), {"kind__exact": "distance"})
    assert "would be blocked at proposed distance 8" in hits.content.decode()

    client.post(trial_url(scene["list"]), {"do": "promote"})

    assert HashList.objects.get(pk=scene["list"].pk).max_distance == 8


def test_discarding_in_the_admin(scene, list_editor):
    client = client_for(list_editor)
    client.post(trial_url(scene["list"]), {"do": "propose", "distance": "8"})

    response = client.post(trial_url(scene["list"]), {"do": "discard"}, follow=True)

    assert "Trial discarded; the list still enforces 4." in response.content.decode()
    assert HashList.objects.get(pk=scene["list"].pk).proposed_distance is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "Enter a whole number."),
        ("-1", "greater than or equal to 0"),
        ("99", "less than or equal to 64"),
        ("40", "from 0 to 10 (MODERATION_REVIEW_DISTANCE)"),
        ("4", "4 is the distance the list enforces already."),
        ("", "This field is required."),
    ],
)
def test_a_bad_proposed_distance_is_a_form_error_not_a_500(scene, list_editor, value, message):
    response = client_for(list_editor).post(
        trial_url(scene["list"]), {"do": "propose", "distance": value}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert HashList.objects.get(pk=scene["list"].pk).proposed_distance is None


def test_an_unknown_trial_action_is_a_400(scene, list_editor):
    response = client_for(list_editor).post(trial_url(scene["list"]), {"do": "explode"})
    assert response.status_code == 400


def test_a_moderator_who_may_only_view_lists_reads_the_trial_but_cannot_change_it(
    scene, moderator
):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)
    moderator.user_permissions.remove(Permission.objects.get(codename="change_hashlist"))
    client = client_for(moderator)  # view_hashlist, not change_hashlist
    page = client.get(trial_url(scene["list"]))
    assert page.status_code == 200 and "Distance 8 is on trial" in page.content.decode()
    assert 'value="promote"' not in page.content.decode()

    for data in ({"do": "promote"}, {"do": "discard"}, {"do": "propose", "distance": "6"}):
        assert client.post(trial_url(scene["list"]), data).status_code == 403
    assert HashList.objects.get(pk=scene["list"].pk).proposed_distance == 8


def test_an_unknown_list_is_a_404(list_editor):
    assert client_for(list_editor).get(
        reverse("admin:moderation_hashlist_trial", args=[999999])
    ).status_code == 404


def test_check_image_reports_what_the_trial_would_do(scene, tmp_path):
    import json
    from io import StringIO

    from django.core.management import call_command

    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)
    path = tmp_path / "q.png"
    path.write_bytes(images.encode(scene["near"], "PNG"))
    out = StringIO()
    call_command("check_image", str(path), "--json", stdout=out)

    result = json.loads(out.getvalue())
    assert result["decision"] == "review"
    [trial] = result["trial"]
    assert (trial["id"], trial["list"], trial["outcome"]) == (
        scene["flagged"].pk,
        "default",
        "block",
    )
    assert (trial["proposed_distance"], trial["enforced_distance"]) == (8, 4)


def test_enforcing_a_wider_distance_sweeps_the_photos_already_stored(
    scene, make_profile, django_capture_on_commit_callbacks
):
    earlier = make_profile("earlier", scene["near"])  # stored before: queued, not taken down
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)

    with django_capture_on_commit_callbacks(execute=True):
        hash_lists.hash_list_promote_distance(hash_list=scene["list"])

    assert not Profile.objects.get(pk=earlier.pk).photo  # within 8 now: taken down


def test_enforcing_a_narrower_distance_takes_nothing_down(
    scene, make_profile, django_capture_on_commit_callbacks
):
    kept = make_profile("kept", scene["near"])
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=2)

    with django_capture_on_commit_callbacks(execute=True):
        hash_lists.hash_list_promote_distance(hash_list=scene["list"])

    assert Profile.objects.get(pk=kept.pk).photo


def test_after_a_trial_its_page_links_the_hits_it_recorded(scene, upload, list_editor):
    hash_lists.hash_list_propose_distance(hash_list=scene["list"], distance=8)
    upload(scene["near"])
    hash_lists.hash_list_discard_distance(hash_list=scene["list"])

    page = client_for(list_editor).get(trial_url(scene["list"])).content.decode()

    assert "1 hit recorded by earlier trials of this list" in page
    assert "Start the trial" in page


def test_the_trial_page_of_a_shadow_list_says_why_no_trial_can_start(scene, list_editor):
    hash_lists.hash_list_update(
        hash_list=scene["list"], max_distance=None, enabled=True, mode="shadow"
    )
    page = client_for(list_editor).get(trial_url(scene["list"])).content.decode()
    assert "only an enforcing list can try a distance" in page
    assert 'id="trial-propose"' not in page
