"""End to end in a real headless Chromium against the live server (``-m browser``).

The main flow: a new user signs up and uploads a photo; a moderator logs into the admin
(password, then the authenticator app's code) and flags it; the user's re-upload of a resized
copy is refused with the generic message; the public profile no longer shows the photo and its
old URL is gone. Plus the admin's "Flag an image" page.

Every step leaves a screenshot in ``artifacts/screenshots/<test name>/NN-step.png`` (on
PostgreSQL in ``artifacts/screenshots-postgresql/``).

How the pieces fit:
- ``live_server`` (pytest-django) runs the site in a thread of this process on a transactional
  test database, so rows the browser creates are visible to the assertions here and the other
  way round. Tasks use the immediate backend, so the sweep after a flag runs in that thread.
- Media: ``config/urls.py`` serves MEDIA_URL only with DEBUG on, and tests run with DEBUG off.
  Django's ``LiveServerThread`` wraps the site in its own media handler, which serves MEDIA_URL
  from ``settings.MEDIA_ROOT`` as read on each request (the per-test folder that
  ``conftest.isolated_storage`` sets) and hands anything it can't find back to the site, which
  answers 404. So photos load in the browser with production URLs unchanged, and no test urlconf
  is needed.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from moderation.hashing import fingerprint
from moderation.models import AuditEvent, FlaggedFingerprint
from profiles.models import Profile
from tests import browser, images
from tests.browser_site import (
    GENERIC,
    MOD_PASSWORD,
    USER_PASSWORD,
    admin_login,
    admin_logout,
    site_login,
    site_logout,
    write_jpeg,
)

pytestmark = pytest.mark.browser

# --- tests --------------------------------------------------------------------------------


def test_flagged_photo_is_taken_down_and_its_copy_refused(
    site, moderator_account, tmp_path, django_user_model
):
    original = images.photo(21)
    first_upload = write_jpeg(tmp_path / "me at the lake.jpg", original, quality=90)
    resized_copy = write_jpeg(tmp_path / "me-small.jpg", images.resized(original, 0.6), quality=80)

    # a. A new user signs up through the form ...
    site.get("/signup/")
    site.fill("#id_username", "carol")
    site.fill("#id_password1", USER_PASSWORD)
    site.fill("#id_password2", USER_PASSWORD)
    site.shot("signup-form")
    site.submit("main form button[type=submit]")
    site.wait_for_path("/profile/")
    assert "Welcome! Add a photo to your profile." in site.messages()
    site.shot("signed-up")
    carol = django_user_model.objects.get(username="carol")

    # ... uploads a photo on /profile/ ...
    site.fill("#id_display_name", "Carol")
    site.find("#id_photo").send_keys(str(first_upload))
    site.shot("photo-chosen")
    site.submit("main form[enctype] button[type=submit]")
    site.wait_for_path("/profile/")
    assert "Your profile was saved." in site.messages()
    assert browser.wait_for_image(site.driver, site.find("#current-photo")) > 0
    site.shot("photo-saved")
    profile = Profile.objects.get(user=carol)
    assert profile.photo and profile.photo_dhash is not None

    # ... and the public page shows it.
    site.get("/u/carol/")
    img = site.wait_for("#profile-photo")
    assert browser.wait_for_image(site.driver, img) > 0, "the photo did not load"
    photo_url = img.get_attribute("src")
    assert photo_url == site.url(profile.photo.url)
    assert browser.fetch_status(site.driver, photo_url) == 200
    site.shot("public-page-with-photo")
    site_logout(site)

    # b. A moderator logs into the admin, selects the profile and flags its photo.
    admin_login(site, "moira", MOD_PASSWORD)
    site.shot("admin-home")
    site.find("#content-main a[href='/admin/profiles/profile/']").click()  # "Profiles"
    site.wait_for_path("/admin/profiles/profile/")
    row_checkbox = site.find(f"input.action-select[value='{profile.pk}']")
    thumb = site.find("#result_list img")
    assert browser.wait_for_image(site.driver, thumb) > 0, "the admin thumbnail did not load"
    row_checkbox.click()
    Select(site.find("select[name=action]")).select_by_visible_text("Flag selected photos")
    site.shot("flag-action-chosen")
    site.submit("button[name=index]")

    site.wait_for_text("#content", "These photos will be banned")
    preview = site.find(".flag-list img")
    assert browser.wait_for_image(site.driver, preview) > 0
    assert "carol" in site.find(".flag-list").text
    site.fill("#id_reason", "Not a photo of the user: reported stock image")
    site.shot("flag-confirmation")
    site.submit("#content form input[type=submit]")

    site.wait_for_path("/admin/profiles/profile/")
    success = site.wait_for(".messagelist .success")
    assert success.text == "Flagged 1 photo; sweep of stored photos: 1 done (0 taken down)."
    site.shot("flagged")
    profile.refresh_from_db()
    assert not profile.photo and profile.photo_dhash is None
    flagged = FlaggedFingerprint.objects.get()
    assert flagged.active and flagged.flagged_by == moderator_account
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN, target__contains="carol")
    admin_logout(site)

    # c. The user logs in again and re-uploads a resized copy: refused, generic message only.
    site_login(site, "carol", USER_PASSWORD)
    site.wait_for_path("/profile/")
    assert site.find(".avatar.empty").text == "No photo yet"
    site.find("#id_photo").send_keys(str(resized_copy))
    site.shot("resized-copy-chosen")
    site.submit("main form[enctype] button[type=submit]")
    errors = site.wait_for("main form .errorlist")
    assert errors.text == GENERIC
    page_text = site.find("main").text
    assert "distance" not in page_text.lower() and flagged.hex not in page_text
    assert "Your profile was saved." not in site.messages()
    assert not site.find_all("#current-photo")
    site.shot("reupload-refused")
    profile.refresh_from_db()
    assert not profile.photo

    # d. The public profile no longer shows a photo, and the old photo URL is gone.
    site.get("/u/carol/")
    site.wait_for_text("main .card", "Carol")
    assert not site.find_all("#profile-photo")
    assert site.find(".avatar.empty").text == "No photo"
    site.shot("public-page-without-photo")
    assert browser.fetch_status(site.driver, photo_url) == 404
    site.driver.get(photo_url)
    assert "Not Found" in site.find("body").text
    site.shot("old-photo-url-404")

    assert [p.name for p in site.shot.taken] == [
        "01-signup-form.png",
        "02-signed-up.png",
        "03-photo-chosen.png",
        "04-photo-saved.png",
        "05-public-page-with-photo.png",
        "06-admin-login.png",
        "07-admin-home.png",
        "08-flag-action-chosen.png",
        "09-flag-confirmation.png",
        "10-flagged.png",
        "11-login-as-carol.png",
        "12-resized-copy-chosen.png",
        "13-reupload-refused.png",
        "14-public-page-without-photo.png",
        "15-old-photo-url-404.png",
    ]


def test_admin_flag_an_image_page_adds_to_banned_set(site, moderator_account, tmp_path):
    path = write_jpeg(tmp_path / "reported.jpg", images.photo(22), quality=85)
    with path.open("rb") as fh:
        expected_hex = fingerprint(fh).hex

    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/flaggedfingerprint/")
    site.shot("flagged-fingerprints-empty")
    site.find(".object-tools a[href$='/flag-image/']").click()  # "Flag an image"
    site.wait_for_path("/admin/moderation/flaggedfingerprint/flag-image/")
    site.find("#id_image").send_keys(str(path))
    site.fill("#id_reason", "Reported by three users")
    site.shot("flag-image-form")
    site.submit("#flag-image-form input[type=submit]")

    site.wait_for_path("/admin/moderation/flaggedfingerprint/")
    success = site.wait_for(".messagelist .success")
    assert success.text == f"Flagged {expected_hex}. Sweep of stored photos: 1 done (0 taken down)."
    rows = site.find_all("#result_list tbody tr")
    assert len(rows) == 1
    assert rows[0].find_element(By.CSS_SELECTOR, "code").text == expected_hex
    assert "Reported by three users" in rows[0].text
    site.shot("listed-in-flagged-fingerprints")

    flagged = FlaggedFingerprint.objects.get()
    assert flagged.hex == expected_hex
    assert flagged.source == FlaggedFingerprint.Source.ADMIN_UPLOAD
    assert flagged.original  # kept, privately


def test_review_queue_shows_both_images_and_dismiss_allows_the_upload(
    site, moderator_account, tmp_path, settings, django_user_model
):
    """A near copy is accepted and queued; the moderator sees the upload and the
    flagged original side by side (through the quarantine view) and dismisses it."""
    from moderation import flagging
    from moderation.models import AllowedMatch, ReviewItem

    settings.MODERATION_MAX_DISTANCE = 4
    settings.MODERATION_MAX_UNCONFIRMED_DISTANCE = 4
    settings.MODERATION_REVIEW_DISTANCE = 10
    original = images.photo(31)
    flagged = flagging.flag_image(
        file=images.upload(original, "reported.png", "PNG"),
        reason="reported stock image",
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
    ).fingerprint
    near = tmp_path / "near.png"
    near.write_bytes(images.encode(images.near_miss(original), "PNG"))
    django_user_model.objects.create_user(username="dave", password=USER_PASSWORD)

    # The user uploads a near copy: accepted (not blocked), and queued for review.
    site_login(site, "dave", USER_PASSWORD)
    site.wait_for_path("/profile/")
    site.find("#id_photo").send_keys(str(near))
    site.submit("main form[enctype] button[type=submit]")
    assert "Your profile was saved." in site.messages()
    site.shot("near-copy-accepted")
    item = ReviewItem.objects.get()
    site_logout(site)

    # The moderator opens the queue and the item: both images load, with the evidence.
    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/reviewitem/")
    site.shot("review-queue")
    site.get(f"/admin/moderation/reviewitem/{item.pk}/change/")
    upload_img = site.wait_for("#review-upload img")
    original_img = site.find("#review-original img")
    assert browser.wait_for_image(site.driver, upload_img) > 0
    assert browser.wait_for_image(site.driver, original_img) > 0, "the original did not load"
    assert "/moderation/quarantine/" in original_img.get_attribute("src")
    assert flagged.hex in site.find("#content").text and item.hex in site.find("#content").text
    site.shot("review-side-by-side")

    site.submit("input[value='Dismiss (not a match)']")
    site.wait_for_path("/admin/moderation/reviewitem/")
    assert "Dismissed" in site.wait_for(".messagelist .success").text
    site.shot("dismissed")
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.DISMISSED
    assert AllowedMatch.objects.filter(fingerprint=flagged).exists()


def test_allowlist_page_shows_the_exception_and_revoke_restores_the_match(
    site, moderator_account, settings, django_user_model
):
    """The allowlist lists a dismissal (who, when, which fingerprint, which image);
    the moderator revokes it with a reason, and the image is matched again."""
    from moderation import desk, flagging, matching, screening, sweeping
    from moderation.hashing import fingerprint_image
    from moderation.models import AllowedMatch, ReviewItem
    from profiles.photos import profile_set_photo
    from profiles.services import profile_for

    settings.MODERATION_MAX_DISTANCE = 4
    settings.MODERATION_MAX_UNCONFIRMED_DISTANCE = 4
    settings.MODERATION_REVIEW_DISTANCE = 10
    original = images.photo(32)
    flagged = flagging.flag_image(
        file=images.upload(original, "reported.png", "PNG"),
        reason="reported stock image",
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
    ).fingerprint
    near = images.near_miss(original)
    erin = django_user_model.objects.create_user(username="erin", password=USER_PASSWORD)
    profile_set_photo(profile=profile_for(user=erin), upload=images.upload(near))
    sweeping.recheck_stored_image(instance=Profile.objects.get(user=erin))
    desk.review_dismiss(item=ReviewItem.objects.get(), actor=moderator_account)
    allowed = AllowedMatch.objects.get()
    assert screening.check(fingerprint_image(near)).decision == matching.PASS

    admin_login(site, "moira", MOD_PASSWORD)
    site.find("#content-main a[href='/admin/moderation/allowedmatch/']").click()
    site.wait_for_path("/admin/moderation/allowedmatch/")
    row = site.find("#result_list tbody tr")
    assert allowed.dhash_hex in row.text and flagged.hex in row.text
    assert "moira" in row.text and "in force" in row.text
    assert browser.wait_for_image(site.driver, row.find_element(By.CSS_SELECTOR, "img")) > 0
    site.shot("allowlist")

    site.find(f"input.action-select[value='{allowed.pk}']").click()
    Select(site.find("select[name=action]")).select_by_visible_text("Revoke selected exceptions")
    site.submit("button[name=index]")
    site.wait_for_text("#content", "Revoked, an upload of the same image is refused or queued")
    site.fill("#id_reason", "dismissed by mistake: it is the stock image")
    site.shot("revoke-confirmation")
    site.submit("#content form input[type=submit]")

    site.wait_for_path("/admin/moderation/allowedmatch/")
    assert "Revoked 1 exception" in site.wait_for(".messagelist .success").text
    assert "revoked" in site.find("#result_list tbody tr").text
    site.shot("revoked")
    allowed.refresh_from_db()
    assert allowed.revoked_by == moderator_account
    assert AuditEvent.objects.filter(action="revoke", actor=moderator_account).exists()
    assert screening.check(fingerprint_image(near)).decision == matching.REVIEW


def test_hash_list_trial_distance_records_what_it_would_block_then_is_enforced(
    site, moderator_account, tmp_path, settings, django_user_model
):
    """The moderator puts a wider distance on trial for the enforcing default list;
    a user's near copy is accepted and recorded as "would be blocked at proposed distance 8";
    the moderator reads it and enforces the distance; the next such upload is refused."""
    from moderation import flagging
    from moderation.models import HashList, ShadowHit

    settings.MODERATION_MAX_DISTANCE = 4
    settings.MODERATION_MAX_UNCONFIRMED_DISTANCE = 4
    settings.MODERATION_REVIEW_DISTANCE = 10
    original = images.photo(33)
    flagged = flagging.flag_image(
        file=images.upload(original, "reported.png", "PNG"),
        reason="reported stock image",
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
    ).fingerprint
    default = flagged.hash_list
    near = tmp_path / "near.png"
    near.write_bytes(images.encode(images.near_miss(original), "PNG"))
    django_user_model.objects.create_user(username="fred", password=USER_PASSWORD)

    # The moderator opens the list and starts a trial at distance 8.
    admin_login(site, "moira", MOD_PASSWORD)
    site.get(f"/admin/moderation/hashlist/{default.pk}/change/")
    site.find(".object-tools a[href$='/trial/']").click()  # "Try a distance"
    site.wait_for_path(f"/admin/moderation/hashlist/{default.pk}/trial/")
    site.fill("#id_distance", "8")
    site.shot("trial-form")
    site.submit("#trial-propose input[type=submit]")
    assert "Distance 8 is on trial" in site.wait_for(".messagelist .success").text
    site.shot("trial-started")
    admin_logout(site)

    # A user uploads a near copy: accepted as before, and recorded by the trial.
    site_login(site, "fred", USER_PASSWORD)
    site.wait_for_path("/profile/")
    site.find("#id_photo").send_keys(str(near))
    site.submit("main form[enctype] button[type=submit]")
    assert "Your profile was saved." in site.messages()
    site_logout(site)
    hit = ShadowHit.objects.get()
    assert hit.label == "would be blocked at proposed distance 8"

    # The moderator reads the hit on the trial page and enforces the distance.
    admin_login(site, "moira", MOD_PASSWORD)
    site.get(f"/admin/moderation/hashlist/{default.pk}/trial/")
    table = site.wait_for("#trial-hits")
    assert "would be blocked at proposed distance 8" in table.text and "fred" in table.text
    assert "1 accepted upload would have been caught at distance 8" in site.find("#trial").text
    site.shot("trial-hits")
    site.submit("#trial-decision button[value=promote]")
    assert "Distance 8 is enforced from now on." in site.wait_for(".messagelist .success").text
    site.shot("trial-enforced")
    assert HashList.objects.get(pk=default.pk).max_distance == 8
    assert AuditEvent.objects.filter(action="promote", actor=moderator_account).exists()


def test_a_moderator_opts_in_to_review_emails_from_the_queue_page(site, moderator_account):
    """The opt-in button is a form of its own (a form nested in the changelist's form would
    be dropped by the browser and the button would submit the changelist instead)."""
    from moderation.models import ReviewSubscription

    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/reviewitem/")
    site.submit("#review-subscription input[type=submit]")
    site.wait_for_path("/admin/moderation/reviewitem/")
    assert site.messages()  # a message about the subscription
    assert "at most one every 60 minutes" in site.find("#review-subscription").text
    site.shot("subscribed")
    assert ReviewSubscription.objects.filter(user=moderator_account).exists()
    site.submit("#review-subscription input[type=submit]")
    assert not ReviewSubscription.objects.filter(user=moderator_account).exists()
