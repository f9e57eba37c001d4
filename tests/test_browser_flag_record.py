"""In headless Chromium (``-m browser``): a moderator reads a poor flag's record on its page,
finds it under "Flags to re-review" on the dashboard, follows the link to the filtered list, and
keeps the flag from its page.

Screenshots go to the test's pytest tmp folder (``<tmp>/screenshots/NN-step.png``); the fixtures
and page helpers are ``tests/browser_site.py``'s."""

from __future__ import annotations

import pytest

from moderation.models import AuditEvent
from tests import browser
from tests.browser_site import MOD_PASSWORD, Site, admin_login

pytestmark = pytest.mark.browser


@pytest.fixture
def site(driver, live_server, tmp_path):
    """The browser on a fresh session, its screenshots under this test's tmp folder."""
    driver.get(live_server.url + "/")
    driver.delete_all_cookies()
    return Site(driver, live_server.url, browser.Screenshots(driver, tmp_path / "screenshots"))


def test_a_poor_flag_is_read_on_its_page_listed_on_the_dashboard_and_kept(
    site, moderator_account, poor_flag
):
    flagged = poor_flag.flagged
    admin_login(site, "moira", MOD_PASSWORD)

    site.get(f"/admin/moderation/flaggedfingerprint/{flagged.pk}/change/")
    panel = site.wait_for("#flag-record")
    assert "Precision: 16 % (1 of 6 judged right): poor" in panel.text
    assert "Listed for re-review" in panel.text
    precision_line = site.find("#record-precision")
    colour = site.driver.execute_script(
        "return getComputedStyle(arguments[0]).color", precision_line
    )
    assert colour != "rgb(0, 0, 0)"  # admin.css marks a poor rating (no inline style)
    flag_shot = site.shot("flag-record")

    site.get("/admin/moderation/reviewitem/dashboard/")
    block = site.wait_for("#rereview-flags")
    assert "1 flag with poor precision" in block.text and flagged.hex in block.text
    dashboard_shot = site.shot("dashboard-flags-to-re-review")

    site.submit("#rereview-flags p a")
    assert "precision=rereview" in site.driver.current_url
    rows = site.find_all("#result_list tbody tr")
    assert len(rows) == 1 and flagged.hex in rows[0].text and "16 % (poor)" in rows[0].text
    site.shot("filtered-list")

    site.get(f"/admin/moderation/flaggedfingerprint/{flagged.pk}/change/")
    site.fill("#record-rereview input[name=reason]", "both originals checked")
    site.submit("#record-rereview button[type=submit]")
    assert "Marked re-reviewed" in " ".join(site.messages())
    assert "Re-reviewed and kept on" in site.find("#record-rereviewed").text
    site.shot("kept")
    assert AuditEvent.objects.filter(action="rereview", fingerprint=flagged).count() == 1

    for shot in (flag_shot, dashboard_shot):
        assert shot.is_file() and shot.stat().st_size > 10_000
    print("screenshots:", *site.shot.taken, sep="\n  ")
