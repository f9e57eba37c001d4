"""In headless Chromium (``-m browser``), the desk's protections as people meet them: a moderator
reviews with every image blurred until clicked and moves on by keyboard; a prober is escalated
after N refused attempts while seeing only the generic message; a default avatar flagged by
mistake is held in shadow before it takes down more than N photos, and resumed.

Screenshots of each step go to ``artifacts/screenshots/<test name>/``. The fixtures and page
helpers are ``tests/browser_site.py``'s."""

from __future__ import annotations

import pytest

from moderation import flagging
from moderation.models import (
    AuditEvent,
    FlaggedFingerprint,
    ImageViewDay,
    ProberEscalation,
    ReviewItem,
)
from profiles.models import Profile
from tests import browser, images
from tests.browser_site import (
    GENERIC,
    MOD_PASSWORD,
    USER_PASSWORD,
    admin_login,
    site_login,
    site_logout,
    write_jpeg,
)

pytestmark = pytest.mark.browser


def filter_of(page, element) -> str:
    return page.driver.execute_script("return getComputedStyle(arguments[0]).filter", element)


def wait_until(page, condition, message: str):
    return browser.wait(page.driver).until(lambda d: condition(), message)


def views_of(user) -> int:
    row = ImageViewDay.objects.filter(user=user).first()
    return row.views if row else 0


def test_review_images_are_blurred_until_clicked_and_keys_decide_and_move_on(
    site, moderator_account, settings, make_profile
):
    settings.MODERATION_MAX_DISTANCE = 4
    settings.MODERATION_MAX_UNCONFIRMED_DISTANCE = 4
    settings.MODERATION_REVIEW_DISTANCE = 10
    original = images.photo(31)
    flagging.flag_image(
        file=images.upload(original, "reported.png", "PNG"),
        reason="reported stock image",
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
    )
    for i in range(2):
        make_profile(f"near{i}", images.near_miss(original, seed=40 + i))
    first, second = ReviewItem.objects.pending()

    admin_login(site, "moira", MOD_PASSWORD)
    site.get(f"/admin/moderation/reviewitem/{first.pk}/change/")
    upload = site.wait_for("#review-upload img.mod-img")
    original_img = site.find("#review-original img.mod-img")
    assert browser.wait_for_image(site.driver, upload) > 0
    assert browser.wait_for_image(site.driver, original_img) > 0
    assert "blur" in filter_of(site, upload) and "grayscale" in filter_of(site, upload)
    assert "blur" in filter_of(site, original_img)
    site.shot("blurred-by-default")

    upload.click()  # reveals this one image only
    wait_until(site, lambda: filter_of(site, upload) == "none", "the upload was not revealed")
    assert "blur" in filter_of(site, original_img)
    wait_until(site, lambda: views_of(moderator_account) == 1, "the reveal was not counted")
    site.wait_for_text("#images-viewed-today", "1")
    site.shot("upload-revealed")

    site.find("body").send_keys("v")  # reveal every image on the page
    wait_until(site, lambda: filter_of(site, original_img) == "none", "v revealed nothing")
    revealed = len(site.find_all("img.mod-img"))
    wait_until(site, lambda: views_of(moderator_account) == revealed, "reveals not counted")
    site.shot("all-revealed")

    old_html = site.find("html")
    site.find("body").send_keys("d")  # dismiss, and the next pending item opens
    browser.wait(site.driver).until(browser.page_replaced(old_html))
    site.wait_for_path(f"/admin/moderation/reviewitem/{second.pk}/change/")
    assert "Dismissed" in site.wait_for(".messagelist .success").text
    first.refresh_from_db()
    assert first.status == ReviewItem.Status.DISMISSED
    assert "blur" in filter_of(site, site.wait_for("#review-upload img.mod-img"))
    site.shot("next-item-blurred")


def test_a_prober_is_escalated_after_n_refused_attempts_and_sees_only_the_generic_message(
    site, moderator_account, settings, tmp_path, django_user_model
):
    settings.MODERATION_PROBER_ATTEMPTS = 3
    original = images.photo(57)
    flagged = flagging.flag_image(
        file=images.upload(original, "banned.png", "PNG"),
        reason="known bad",
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
    ).fingerprint
    django_user_model.objects.create_user(username="probe", password=USER_PASSWORD)

    site_login(site, "probe", USER_PASSWORD)
    site.wait_for_path("/profile/")
    for attempt in range(3):
        copy = write_jpeg(
            tmp_path / f"try{attempt}.jpg", images.brightened(original, 1.0 + 0.04 * attempt)
        )
        site.find("#id_photo").send_keys(str(copy))
        site.submit("main form[enctype] button[type=submit]")
        assert GENERIC in site.find("main").text
        assert "review" not in site.find("main").text.lower()
        site.shot(f"attempt-{attempt + 1}-refused")
    escalation = ProberEscalation.objects.get()
    assert escalation.user.username == "probe" and escalation.fingerprint == flagged

    # The next upload that passes is saved as for anyone, and held off the public page.
    innocent = write_jpeg(tmp_path / "innocent.jpg", images.photo(58))
    site.find("#id_photo").send_keys(str(innocent))
    site.submit("main form[enctype] button[type=submit]")
    assert "Your profile was saved." in site.messages()
    site.get("/u/probe/")
    assert not site.find_all("#profile-photo")
    site.shot("held-photo-not-public")
    site_logout(site)

    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/reviewitem/dashboard/")
    site.find("#probers a[href*='/proberescalation/']:not([href*='status'])").click()
    site.wait_for_path(f"/admin/moderation/proberescalation/{escalation.pk}/change/")
    assert len(site.find_all("#prober-attempts figure.attempt")) == 3
    assert flagged.hex in site.find("#prober-attempts").text
    held = site.find_all("#prober-held li")
    assert len(held) == 1 and "probe" in held[0].text
    site.shot("escalation-side-by-side")


def test_a_default_avatar_flagged_by_mistake_is_held_before_it_takes_down_more_than_n(
    site, moderator_account, settings, tmp_path, make_profile
):
    settings.MODERATION_FLOOD_MAX_USERS = 3
    avatar = images.photo(4242)
    for i in range(6):
        make_profile(f"member{i}", avatar)
    path = write_jpeg(tmp_path / "avatar.jpg", avatar, quality=90)

    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/flaggedfingerprint/flag-image/")
    site.find("#id_image").send_keys(str(path))
    site.fill("#id_reason", "looked like spam (it is the default avatar)")
    site.submit("#flag-image-form input[type=submit]")
    assert "flood guard held this flag" in site.wait_for(".messagelist .warning").text
    site.shot("flag-held-warning")
    flagged = FlaggedFingerprint.objects.get()
    flagged.refresh_from_db()
    assert flagged.held
    taken = AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).count()
    assert taken <= 3
    assert Profile.objects.exclude(photo="").count() == 6 - taken

    site.get("/admin/moderation/reviewitem/dashboard/")
    row = site.wait_for(f"#held-flag-{flagged.pk}")
    assert flagged.hex in row.text
    assert f"{taken} taken down" in row.text
    site.shot("dashboard-flag-held")
    site.submit(f"#held-flag-{flagged.pk} button[value=resume]")
    assert "Resumed" in site.wait_for(".messagelist .success").text
    assert not site.find_all(f"#held-flag-{flagged.pk}")
    site.shot("resumed")
    assert Profile.objects.exclude(photo="").count() == 0
    assert site.find_all("#flood-held") == []
