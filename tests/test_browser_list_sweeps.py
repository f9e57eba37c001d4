"""In a browser: a partner's list imported into an enforced list takes down a photo already
stored; its owner sees the statement of reasons and appeals; the moderator sees the list
sweep on the Sweeps page and, on the appeal, the kept photo beside the list entry, and
overturns it. A list the flood guard held shows on the dashboard and is resumed there.

Screenshots: ``artifacts/screenshots/<test name>/NN-step.png``.
"""

from __future__ import annotations

import pytest

from moderation.models import HashList, Notice, Sweep
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
from tests.test_list_sweeps import import_lines, pdq_of

pytestmark = pytest.mark.browser


def test_an_imported_list_takes_down_a_stored_photo_and_its_appeal_names_the_entry(
    site,
    moderator_account,
    django_user_model,
):
    scene = images.photo(1681)
    dora = django_user_model.objects.create_user(username="dora", password=USER_PASSWORD)
    profile_set_photo(profile=profile_for(user=dora), upload=images.upload(scene, "dora.jpg"))
    partner = HashList.objects.create(
        name="partner", public_description="Listed by a child-safety partner"
    )

    # The partner's file holds the PDQ of its own copy; the sweep runs once the import commits.
    import_lines(partner, [pdq_of(scene)])

    assert not Profile.objects.get(user=dora).photo
    notice = Notice.objects.get(user=dora)
    entry = notice.signal_entry

    site_login(site, "dora", USER_PASSWORD)
    site.wait_for_path("/profile/")
    statement = site.wait_for(f"#notice-{notice.pk}")
    assert "Photo taken down" in statement.text
    assert "Listed by a child-safety partner" in statement.text
    assert entry.value not in site.find("main").text  # the hash is staff-only
    site.shot("profile-with-notice")
    site.submit(f"#notice-{notice.pk} a")
    site.wait_for_path(f"/profile/notices/{notice.pk}/")
    site.fill("#id_text", "This is a photo of my own garden.")
    site.submit("#appeal button[type=submit]")
    assert "Your appeal was sent. A moderator will look at it and tell you." in site.messages()
    site_logout(site)

    admin_login(site, "moira", MOD_PASSWORD)
    sweep = Sweep.objects.get(hash_list=partner)
    site.get("/admin/moderation/sweep/")
    listed = site.find("#result_list").text
    assert f"list sweep #{sweep.pk} (done)" in listed and "partner" in listed
    site.shot("sweeps-page")
    site.get(f"/admin/moderation/sweep/{sweep.pk}/change/")
    assert "taken down" in site.find("main").text.lower()
    site.shot("list-sweep")

    site.get("/admin/moderation/appeal/")
    site.submit("#result_list tbody tr th a")
    photo = site.find("#appeal-photo img")
    assert browser.wait_for_image(site.driver, photo) > 0, "the kept photo did not load"
    assert entry.value in site.find("#appeal-original").text
    site.fill("#id_reason", "A garden, not the listed image.")
    site.shot("appeal-photo-beside-the-entry")
    site.submit("#overturn")
    site.wait_for_path("/admin/moderation/appeal/")
    assert site.wait_for(".messagelist .success").text == (
        "Overturned: the photo is back on the profile; list sweeps leave it alone."
    )
    site.shot("overturned")
    admin_logout(site)
    assert Profile.objects.get(user=dora).photo


def test_a_list_held_by_the_flood_guard_shows_on_the_dashboard_and_is_resumed_there(
    site,
    moderator_account,
    settings,
    make_profile,
):
    settings.MODERATION_FLOOD_MAX_USERS = 2
    avatar = images.photo(1682)
    for i in range(4):
        make_profile(f"member{i}", avatar)
    partner = HashList.objects.create(name="partner", description="Partner X's spam hashes")

    import_lines(partner, [pdq_of(avatar)])  # would take down 4 photos: held, none down

    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.SHADOW
    assert Profile.objects.exclude(photo="").count() == 4
    admin_login(site, "moira", MOD_PASSWORD)
    site.get("/admin/moderation/reviewitem/dashboard/")
    row = site.wait_for(f"#held-list-{partner.pk}")
    assert "partner" in row.text and "0 taken down" in row.text
    assert "hash list held by the flood guard" in site.find("#flood-held-lists h2").text
    site.shot("dashboard-list-held")
    site.submit(f"#held-list-{partner.pk} button[value=resume]")
    assert "Resumed" in site.wait_for(".messagelist .success").text
    assert site.find_all("#flood-held-lists") == []
    site.shot("resumed")
    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.ENFORCE
    assert Profile.objects.exclude(photo="").count() == 0
