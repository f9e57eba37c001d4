"""In a real headless Chromium (``-m browser``): a moderator unflags a flag and, as an explicit
choice on the confirmation page, puts back the photo it took down; the person finds the photo
back on their profile, and the flag's page names who flagged it in plain text (the moderator
may not view users).

Screenshots: ``artifacts/screenshots/<test name>/NN-step.png``. The browser, live server and
helpers are those of ``tests/browser_site.py``.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.support.ui import Select

from moderation.models import AuditEvent, Notice
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
)
from tests.helpers import ban

pytestmark = pytest.mark.browser


def test_unflag_with_restore_puts_the_photo_back_and_tells_the_person(
    site,
    moderator_account,
    django_user_model,
):
    # Dana's photo is taken down by the sweep of a flag of a re-compressed copy of it.
    scene = images.photo(2351)
    dana = django_user_model.objects.create_user(username="dana", password=USER_PASSWORD)
    profile_set_photo(profile=profile_for(user=dana), upload=images.upload(scene, "dog.jpg"))
    flagged = ban(images.recompressed(scene, 85), reason="looked like a stock image",
                  actor=moderator_account)
    assert not Profile.objects.get(user=dana).photo
    notice = Notice.objects.get(user=dana)

    # The moderator opens the flag: "Flagged by" is a name, not a link to a page they can't see.
    admin_login(site, "moira", MOD_PASSWORD)
    site.get(f"/admin/moderation/flaggedfingerprint/{flagged.pk}/change/")
    flagged_by = site.find(".field-flagged_by .readonly")
    assert flagged_by.text == "moira" and not flagged_by.find_elements("css selector", "a")
    site.shot("flag-page")

    # Unflag it, choosing to put back what it took down.
    site.get("/admin/moderation/flaggedfingerprint/")
    site.find(f"input.action-select[value='{flagged.pk}']").click()
    Select(site.find("select[name=action]")).select_by_visible_text(
        "Unflag selected fingerprints"
    )
    site.submit("button[name=index]")
    site.wait_for_text("#kept-takedowns", "1 photo these flags took down is still kept")
    site.fill("#id_reason", "a photo of her own dog, not the stock image")
    site.find("#id_restore_photos").click()
    site.shot("unflag-confirmation")
    site.submit("#content form input[type=submit]")
    site.wait_for_path("/admin/moderation/flaggedfingerprint/")
    texts = site.messages()
    assert "Unflagged 1 fingerprint." in texts
    assert "Put back 1 photo; its owner is told." in texts
    site.shot("unflagged-and-restored")

    site.get("/admin/moderation/auditevent/")
    trail = site.find("#result_list").text
    assert "Unflagged" in trail and "Photo restored from its kept copy" in trail
    site.shot("audit-trail")
    admin_logout(site)

    # Dana's photo is back, and her notice says so.
    site_login(site, "dana", USER_PASSWORD)
    site.wait_for_path("/profile/")
    assert browser.wait_for_image(site.driver, site.find("#current-photo")) > 0
    assert "Your photo was put back" in site.find(f"#notice-{notice.pk}").text
    site.shot("photo-back")
    assert AuditEvent.objects.get(action="restore").actor == moderator_account
