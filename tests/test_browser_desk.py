"""The moderators' desk in a real headless Chromium (``-m browser``) at 1280x800: the lists
fit the screen with long names in them, a refused upload shows the refused picture (its kept
thumbnail) beside what it matched, both blurred, and which variant (named as ``check_image``
names it), as does an appeal of it, and "Ban it" asks for the reason, from the
keyboard too.

Screenshots: ``artifacts/screenshots/<test name>/NN-step.png``. The browser, live server and
helpers are those of ``tests/browser_site.py``.
"""

from __future__ import annotations

import pytest
from PIL import Image
from selenium.webdriver.common.keys import Keys

from moderation import appeals, flagging
from moderation.models import (
    AuditEvent,
    FlaggedFingerprint,
    Notice,
    RefusedUpload,
    ReviewItem,
)
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import browser, images
from tests.browser_site import (
    MOD_PASSWORD,
    USER_PASSWORD,
    admin_login,
    site_login,
    site_logout,
)
from tests.helpers import ban

pytestmark = pytest.mark.browser

LONG_NAME = "a-very-long-username-" + "x" * 129  # 150 characters, Django's longest
LONG_TEXT = "profile of " + "someone-with-an-unbroken-name-" * 6  # 191 characters
LISTS = {
    "refused uploads": "/admin/moderation/refusedupload/",
    "audit trail": "/admin/moderation/auditevent/",
    "review queue": "/admin/moderation/reviewitem/",
    "review queue all statuses": "/admin/moderation/reviewitem/?status__exact=all",
    "profiles": "/admin/profiles/profile/",
}


def overflow(page) -> dict:
    return page.driver.execute_script(
        """
        const table = document.querySelector("#result_list");
        const box = document.querySelector("#changelist .results");
        return {
          scroll: document.documentElement.scrollWidth,
          inner: window.innerWidth,
          // The table's own box scrolls sideways rather than widen the page: it must not.
          table_scroll: box ? box.scrollWidth : 0,
          table_box: box ? box.clientWidth : 0,
          rows: table ? table.querySelectorAll("tbody tr").length : 0,
        };
        """
    )


def test_the_refused_audit_review_and_profile_lists_fit_a_1280_screen_with_long_data(
    site,
    moderator_account,
    django_user_model,
):
    site.driver.set_window_size(1280, 800)
    flagged = ban(images.photo(1701), reason="a long reason " * 20)
    long_user = django_user_model.objects.create_user(username=LONG_NAME, password="pw")
    profile = profile_for(user=long_user)
    profile.display_name = "D" * 80
    profile.save(update_fields=["display_name"])
    profile_set_photo(profile=profile, upload=images.upload(images.photo(1702), "p.jpg"))
    for n in range(3):
        RefusedUpload.objects.create(
            user=long_user,
            ip="2001:db8:85a3:1234:5678:8a2e:370:7334",
            code="banned_image",
            dhash=flagged.dhash,
            nearest=flagged,
            distance=n,
            found_by="cut",
            variant=13,  # the caption band: the longest name
        )
        AuditEvent.objects.create(
            action=AuditEvent.Action.FLOOD_RESUME,
            actor=long_user,
            fingerprint=flagged,
            target=LONG_TEXT,
            distance=n,
            reason="r" * 500,
        )
        ReviewItem.objects.create(
            target_key="profiles.profile.photo",
            object_id=profile.pk,
            target=LONG_TEXT + str(n),
            file_name=profile.photo.name if n == 0 else f"photos/replaced-{n}.jpg",
            dhash=flagged.dhash,
            uploader=long_user,
            fingerprint=flagged,
            distance=9,
            found_by=ReviewItem.FoundBy.HELD,
        )

    admin_login(site, "moira", MOD_PASSWORD)
    assert site.driver.execute_script("return window.innerWidth") <= 1280
    for name, path in LISTS.items():
        site.get(path)
        site.wait_for("#result_list")
        measured = overflow(site)
        site.shot(name.replace(" ", "-"))
        assert measured["rows"] >= 1, name
        assert measured["scroll"] <= measured["inner"], (name, measured)
        assert measured["table_scroll"] <= measured["table_box"], (name, measured)

    # The full text is on the record's own page (and in the cell's tooltip).
    site.get(f"/admin/moderation/auditevent/{AuditEvent.objects.filter(target=LONG_TEXT).first().pk}/change/")
    assert LONG_TEXT in site.find("#content").text
    site.shot("audit-event-in-full")


def test_a_refused_mirrored_copy_shows_itself_beside_the_matched_picture_blurred_and_mirrored(
    site,
    moderator_account,
    django_user_model,
    tmp_path,
):
    picture = images.photo(1711)
    flagged = flagging.flag_image(
        file=images.upload(picture, "bad.png", "PNG"),
        reason="scam ad",
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
    ).fingerprint
    mirrored = tmp_path / "mirrored.png"
    mirrored.write_bytes(images.encode(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG"))
    django_user_model.objects.create_user(username="mallory", password=USER_PASSWORD)

    site_login(site, "mallory", USER_PASSWORD)
    site.wait_for_path("/profile/")
    site.find("#id_photo").send_keys(str(mirrored))
    site.submit("main form[enctype] button[type=submit]")
    site_logout(site)
    refused = RefusedUpload.objects.get()
    assert (refused.nearest, refused.variant_name) == (flagged, "mirrored")

    site.driver.set_window_size(1280, 800)
    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/refusedupload/")
    row = site.find("#result_list tbody tr")
    assert "mirrored" in row.text and "whole image" not in row.text
    site.shot("refused-list")
    site.get(f"/admin/moderation/refusedupload/{refused.pk}/change/")
    # The refused picture itself (the thumbnail its row keeps) beside what it matched.
    mine = site.wait_for("#refused-picture img.mod-img")
    img = site.wait_for("#matched-original img.mod-img")
    assert browser.wait_for_image(site.driver, mine) > 0, "the refused picture did not load"
    assert browser.wait_for_image(site.driver, img) > 0, "the matched picture did not load"
    assert f"/moderation/refusal-thumbnail/{refused.pk}/" in mine.get_attribute("src")
    assert "/moderation/quarantine/" in img.get_attribute("src")
    assert "mirrored" in site.find(".field-variant_name").text
    blurred = "return getComputedStyle(arguments[0]).filter"
    assert "blur" in site.driver.execute_script(blurred, mine)
    assert "blur" in site.driver.execute_script(blurred, img)
    side_by_side = "return arguments[0].getBoundingClientRect().top"
    assert site.driver.execute_script(side_by_side, mine) == site.driver.execute_script(
        side_by_side, img
    )
    site.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
    site.shot("refused-page-blurred")
    for picture in (mine, img):
        picture.click()
        browser.wait(site.driver).until(
            lambda d, p=picture: "blur" not in d.execute_script(blurred, p),
            "the click did not reveal it",
        )
    site.shot("refused-page-revealed")

    # Appealed, the refusal's evidence is the same pair.
    notice = Notice.objects.get(refused_upload=refused)
    appeal = appeals.file_appeal(notice=notice, user=notice.user, text="That is my own photo.")
    site.get(f"/admin/moderation/appeal/{appeal.pk}/change/")
    mine = site.wait_for("#appeal-photo img.mod-img")
    img = site.wait_for("#appeal-original img.mod-img")
    assert browser.wait_for_image(site.driver, mine) > 0
    assert browser.wait_for_image(site.driver, img) > 0
    assert f"/moderation/refusal-thumbnail/{refused.pk}/" in mine.get_attribute("src")
    assert "blur" in site.driver.execute_script(blurred, mine)
    site.shot("appeal-of-refusal-blurred")
    mine.click()
    browser.wait(site.driver).until(
        lambda d: "blur" not in d.execute_script(blurred, mine), "the click did not reveal it"
    )
    site.shot("appeal-of-refusal-revealed")


def test_ban_it_asks_for_the_reason_and_the_b_key_opens_the_prompt(
    site,
    moderator_account,
    django_user_model,
    settings,
):
    settings.MODERATION_MAX_DISTANCE = 4
    settings.MODERATION_MAX_UNCONFIRMED_DISTANCE = 4
    settings.MODERATION_REVIEW_DISTANCE = 10
    original = images.photo(31)
    flagged = ban(original, reason="reported stock image")
    dave = django_user_model.objects.create_user(username="dave", password=USER_PASSWORD)
    profile_set_photo(
        profile=profile_for(user=dave),
        upload=images.upload(images.near_miss(original), "near.png", "PNG"),
    )
    item = ReviewItem.objects.get()

    site.driver.set_window_size(1280, 800)
    admin_login(site, "moira", MOD_PASSWORD)
    site.get(f"/admin/moderation/reviewitem/{item.pk}/change/")
    site.wait_for("#review-upload img")
    assert not site.find("#ban-prompt").is_displayed()

    site.find("body").send_keys("b")  # the shortcut opens the prompt; nothing is sent yet
    reason = site.wait_for("#id_ban_reason")
    suggested = f"same picture as banned {flagged.hex}: reported stock image"
    assert reason.get_attribute("value") == suggested
    assert site.driver.switch_to.active_element == reason
    site.shot("ban-prompt-suggested")
    reason.send_keys(Keys.ESCAPE)  # cancel: still pending
    assert not site.find("#ban-prompt").is_displayed()
    assert ReviewItem.objects.get().status == ReviewItem.Status.PENDING

    site.find("body").send_keys("b")
    reason = site.wait_for("#id_ban_reason")
    reason.send_keys("same stock photo, mirrored and cropped")  # typing replaces the suggestion
    site.shot("ban-prompt-edited")
    old_html = site.find("html")
    reason.send_keys(Keys.ENTER)
    browser.wait(site.driver).until(browser.page_replaced(old_html))
    assert "Banned" in site.wait_for(".messagelist .success").text
    site.shot("banned")
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.BANNED
    assert FlaggedFingerprint.objects.filter(
        reason="same stock photo, mirrored and cropped"
    ).exists()
