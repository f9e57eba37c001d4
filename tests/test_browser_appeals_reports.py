"""In a real headless Chromium (``-m browser``), the paths of the people on both sides of a
decision: a person whose photo was taken down reads the statement of reasons on their profile,
appeals, a moderator overturns the appeal beside the evidence, and the photo is back, allowed
for that flag, with every step in the audit trail; and a person reports a photo, a moderator
bans it from the report in one step, and the sweep takes a copy down too.

Screenshots: ``artifacts/screenshots/<test name>/NN-step.png``. The browser, live server and
helpers are those of ``tests/browser_site.py``.
"""

from __future__ import annotations

import pytest

from moderation.models import AllowedMatch, Appeal, AuditEvent, HashList, Notice
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import browser, images
from tests.browser_site import (
    MOD_PASSWORD,
    USER_PASSWORD,
    admin_login,
    admin_logout,
    site_login,
    site_logout,
)
from tests.helpers import ban

pytestmark = pytest.mark.browser


def test_takedown_notice_appeal_overturn_and_the_photo_is_back(
    site,
    moderator_account,
    django_user_model,
):
    # A person with a photo; a moderator flags a re-compressed copy of it in a list whose
    # public description is the ground people are given. The sweep takes the photo down.
    scene = images.photo(1671)
    carol = django_user_model.objects.create_user(username="carol", password=USER_PASSWORD)
    profile_set_photo(profile=profile_for(user=carol), upload=images.upload(scene, "lake.jpg"))
    default = HashList.objects.get_or_create(name="default")[0]
    default.public_description = "Stock images are not allowed as profile photos"
    default.save(update_fields=["public_description"])
    flagged = ban(images.recompressed(scene, 85), reason="reported stock image")
    assert not Profile.objects.get(user=carol).photo
    notice = Notice.objects.get(user=carol)

    # The person sees the statement of reasons on their profile page and appeals.
    site_login(site, "carol", USER_PASSWORD)
    site.wait_for_path("/profile/")
    statement = site.wait_for(f"#notice-{notice.pk}")
    assert "Photo taken down" in statement.text
    assert "Stock images are not allowed as profile photos" in statement.text
    assert flagged.hex not in site.find("main").text
    site.shot("profile-with-notice")
    site.submit(f"#notice-{notice.pk} a")
    site.wait_for_path(f"/profile/notices/{notice.pk}/")
    site.fill("#id_text", "That is me at the lake last summer, not a stock image.")
    site.shot("appeal-form")
    site.submit("#appeal button[type=submit]")
    assert "Your appeal was sent. A moderator will look at it and tell you." in site.messages()
    assert site.find("#appeal-status").text == "Open"
    site.shot("appeal-sent")
    site_logout(site)

    # The moderator finds it in the appeals, sees both pictures, and overturns it.
    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/appeal/")
    site.submit("#result_list tbody tr th a")
    for img in site.find_all("#appeal-photo img, #appeal-original img"):
        assert browser.wait_for_image(site.driver, img) > 0, "evidence did not load"
    assert len(site.find_all("#appeal-photo img, #appeal-original img")) == 2
    assert "That is me at the lake" in site.find("#appeal-text").text
    site.fill("#id_reason", "A holiday photo, not the reported stock image.")
    site.shot("appeal-side-by-side")
    site.submit("#overturn")
    site.wait_for_path("/admin/moderation/appeal/")
    assert site.wait_for(".messagelist .success").text == (
        "Overturned: the photo is back on the profile and allowed for that flag."
    )
    site.shot("overturned")

    # The allowlist and the audit trail say what happened.
    site.get("/admin/moderation/allowedmatch/")
    assert flagged.hex in site.find("#result_list").text
    site.get("/admin/moderation/auditevent/")
    trail = site.find("#result_list").text
    for action in ("Appeal filed", "Appeal overturned", "Photo restored from its kept copy"):
        assert action in trail
    site.shot("audit-trail")
    admin_logout(site)

    # The person's photo is back, on their page and the public one.
    site_login(site, "carol", USER_PASSWORD)
    site.wait_for_path("/profile/")
    assert browser.wait_for_image(site.driver, site.find("#current-photo")) > 0
    assert "Overturned" in site.find(f"#notice-{notice.pk} .appeal-status").text
    site.shot("photo-back")
    site.get("/u/carol/")
    assert browser.wait_for_image(site.driver, site.wait_for("#profile-photo")) > 0
    site.shot("public-page-photo-back")

    allowed = AllowedMatch.objects.get()
    assert (allowed.fingerprint, allowed.dhash, allowed.created_by) == (
        flagged,
        notice.dhash,
        moderator_account,
    )
    appeal = Appeal.objects.get()
    assert (appeal.status, appeal.restored, appeal.decided_by) == (
        "overturned",
        True,
        moderator_account,
    )
    actors = dict(
        AuditEvent.objects.filter(action__in=["appeal", "overturn", "restore"]).values_list(
            "action", "actor__username"
        )
    )
    assert actors == {"appeal": "carol", "overturn": "moira", "restore": "moira"}


def test_report_then_ban_in_one_step_and_the_sweep_takes_down_a_copy(
    site,
    moderator_account,
    django_user_model,
):
    # Uma's photo, and Xavier's re-compressed copy of it.
    scene = images.photo(1681)
    for name, picture in (("uma", scene), ("xavier", images.recompressed(scene, 80))):
        owner = django_user_model.objects.create_user(username=name, password=USER_PASSWORD)
        profile_set_photo(profile=profile_for(user=owner), upload=images.upload(picture, "p.jpg"))
    django_user_model.objects.create_user(username="vera", password=USER_PASSWORD)

    # Vera reports Uma's photo from the public page.
    site_login(site, "vera", USER_PASSWORD)
    site.get("/u/uma/")
    site.find("#report summary").click()
    site.find("#report input[value='not_them']").click()
    site.fill("#report textarea", "This is a stock photo I have seen elsewhere.")
    site.shot("report-form")
    site.submit("#report button[type=submit]")
    assert "Thank you. A moderator will look at this photo." in site.messages()
    site.shot("reported")
    site_logout(site)

    # The moderator bans it from the report in one step; the sweep takes the copy down too.
    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/report/")
    site.submit("#result_list tbody tr th a")
    assert browser.wait_for_image(site.driver, site.find("#report-photo img")) > 0
    assert "stock photo I have seen" in site.find("#report-filings").text
    site.fill("#id_reason", "stock image, not the user")
    site.shot("report-decision")
    site.submit("#ban")
    site.wait_for_path("/admin/moderation/report/")
    assert site.wait_for(".messagelist .success").text == (
        "Banned; the photo was taken down and copies swept."
    )
    site.shot("banned")
    admin_logout(site)

    assert Profile.objects.filter(photo="", user__username__in=["uma", "xavier"]).count() == 2
    takedowns = AuditEvent.objects.filter(action="takedown").values_list("target", flat=True)
    assert sorted(t.split()[1] for t in takedowns) == ["uma", "xavier"]
    assert Notice.objects.filter(user__username__in=["uma", "xavier"]).count() == 2

    # Vera sees the outcome on her profile page.
    site_login(site, "vera", USER_PASSWORD)
    site.wait_for_path("/profile/")
    assert site.find("#my-reports .report-status").text == "Banned"
    site.shot("reporter-told")
