"""Reports: a signed-in person reports a profile photo with a reason; reports of one photo are
one queue item; each person reports a photo once and only so often; a moderator bans it in one
step (flag, take-down with its notice, sweep) or dismisses it, and every reporter is told."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from moderation import reports
from moderation.models import (
    AuditEvent,
    EmailDelivery,
    FlaggedFingerprint,
    Notice,
    Report,
    ReportFiling,
)
from profiles.models import Profile
from tests import images

pytestmark = pytest.mark.django_db


@pytest.fixture
def reported(make_profile):
    """Uma's profile with a photo, and a way to sign in as anyone else."""
    return make_profile("uma", images.photo(1701))


@pytest.fixture
def person(django_user_model):
    def make(name: str, email: str = "") -> Client:
        user = django_user_model.objects.create_user(username=name, password="pw", email=email)
        client = Client()
        client.force_login(user)
        client.user = user
        return client

    return make


def report(client, username="uma", reason="sexual", text=""):
    return client.post(reverse("profile-report", args=[username]), {"reason": reason, "text": text})


def test_two_people_reporting_one_photo_make_one_queue_item(reported, person):
    assert report(person("vera"), text="nude").status_code == 302
    assert report(person("walt"), reason="not_them").status_code == 302
    item = Report.objects.get()
    assert item.file_name == reported.photo.name and item.uploader == reported.user
    assert sorted(item.filings.values_list("reporter__username", flat=True)) == ["vera", "walt"]


def test_the_public_page_offers_the_form_to_signed_in_people_other_than_the_owner(reported, person):
    url = reverse("profile-detail", args=["uma"])
    assert "Report this photo" in person("vera").get(url).content.decode()
    assert "Report this photo" not in Client().get(url).content.decode()
    owner = Client()
    owner.force_login(reported.user)
    assert "Report this photo" not in owner.get(url).content.decode()


def test_a_second_report_by_the_same_person_is_refused_and_writes_nothing(reported, person):
    vera = person("vera")
    assert report(vera).status_code == 302
    again = report(vera, reason="violence")
    assert again.status_code == 409
    assert "You have already reported this photo." in again.content.decode()
    assert ReportFiling.objects.get().reason == "sexual"


def test_a_report_flood_from_one_account_is_cut_off(make_profile, person, settings):
    settings.MODERATION_REPORT_RATE_PER_USER = 3
    for i in range(5):
        make_profile(f"p{i}", images.photo(1710 + i))
    vera = person("vera")
    answers = [report(vera, username=f"p{i}").status_code for i in range(5)]
    assert answers == [302, 302, 302, 429, 429]
    assert ReportFiling.objects.count() == 3


@pytest.mark.parametrize(
    ("data", "says"),
    [({"reason": ""}, "Choose a reason."), ({"reason": "sexual", "text": "x" * 50_000}, "1000")],
    ids=["no reason", "50 kB"],
)
def test_bad_report_input_is_answered_and_writes_nothing(reported, person, data, says):
    response = person("vera").post(reverse("profile-report", args=["uma"]), data)
    assert response.status_code == 400 and says in response.content.decode()
    assert not Report.objects.exists()


def test_one_cannot_report_ones_own_photo_or_a_missing_one(reported, make_profile, person):
    with pytest.raises(ValidationError) as info:
        reports.file_report(instance=reported, reporter=reported.user, reason="other")
    assert info.value.code == "own_photo"
    empty = make_profile("xena")
    assert report(person("vera"), username="xena").status_code == 400
    assert not Report.objects.exists() and not Profile.objects.get(pk=empty.pk).photo


def test_anonymous_reports_go_to_the_login_page(reported):
    response = report(Client())
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert not Report.objects.exists()


def test_banning_from_a_report_flags_takes_down_notifies_and_tells_reporters(
    reported, person, moderator, mailoutbox, django_capture_on_commit_callbacks
):
    report(person("vera", email="vera@example.com"))
    report(person("walt"))
    item = Report.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert reports.report_ban(report=item, actor=moderator, reason="nudity")
    reported.refresh_from_db()
    assert not reported.photo
    flagged = FlaggedFingerprint.objects.get()
    assert flagged.flagged_by == moderator and "nudity" in flagged.reason
    assert Notice.objects.get(user=reported.user).fingerprint == flagged
    assert item.status == Report.Status.BANNED and item.decided_by == moderator
    assert [m.to for m in mailoutbox if m.subject == "Your report was decided"] == [
        ["vera@example.com"]
    ]
    assert flagged.sweeps.get().state == "done"
    assert not reports.report_ban(report=item, actor=moderator, reason="again")


def test_dismissing_a_report_keeps_the_photo_and_is_audited(reported, person, moderator):
    report(person("vera", email="vera@example.com"))
    item = Report.objects.get()
    assert reports.report_dismiss(report=item, actor=moderator, reason="a beach photo")
    reported.refresh_from_db()
    assert reported.photo and not FlaggedFingerprint.objects.exists()
    assert AuditEvent.objects.get(action="report_dismiss").reason == "a beach photo"
    assert EmailDelivery.objects.filter(kind="report_outcome").count() == 1


def test_the_reporter_sees_the_outcome_on_their_profile_page(reported, person, moderator):
    vera = person("vera")
    report(vera)
    reports.report_dismiss(report=Report.objects.get(), actor=moderator, reason="fine")
    page = vera.get(reverse("profile-edit")).content.decode()
    assert "Photos you reported" in page and "Dismissed (the photo stays)" in page


def test_a_photo_replaced_after_the_report_is_not_banned(reported, person, moderator):
    from tests.helpers import post_photo

    report(person("vera"))
    owner = Client()
    owner.force_login(reported.user)
    assert post_photo(owner, images.photo(1702)).status_code == 302
    item = Report.objects.get()
    assert not reports.report_ban(report=item, actor=moderator, reason="nudity")
    assert item.status == Report.Status.GONE
    assert Profile.objects.get(pk=reported.pk).photo and not FlaggedFingerprint.objects.exists()


def test_the_admin_bans_from_a_report_in_one_step(reported, person, moderator):
    report(person("vera"), text="please remove")
    item = Report.objects.get()
    client = Client()
    client.force_login(moderator)
    url = reverse("admin:moderation_report_change", args=[item.pk])
    page = client.get(url).content.decode()
    assert reported.photo.url in page and "please remove" in page
    response = client.post(url, {"decision": "ban", "reason": "nudity"}, follow=True)
    assert "Banned; the photo was taken down and copies swept." in response.content.decode()
    assert not Profile.objects.get(pk=reported.pk).photo
