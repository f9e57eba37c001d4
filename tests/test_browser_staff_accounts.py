"""Staff accounts in a real headless Chromium (``-m browser``): a moderator enrols an
authenticator app at the first admin login and logs in with password and code after that;
guessed passwords end in the lockout page. Fixtures and helpers: ``tests/browser_site.py``."""

from __future__ import annotations

import base64
import time

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from moderation.models import AuditEvent
from tests.browser_site import (
    MOD_PASSWORD,
    admin_logout,
    admin_password_step,
    make_moderator,
)
from tests.two_factor import fresh_totp_code

pytestmark = pytest.mark.browser


def code_from_key(secret_shown: str) -> str:
    """What an authenticator app shows for the key typed in from the enrolment page (RFC 6238,
    django-otp's own TOTP): the test knows the key only from the page, as a person would."""
    key = base64.b32decode(secret_shown.replace(" ", ""))
    totp = TOTP(key)
    totp.time = time.time()
    return f"{totp.token():06d}"


def test_a_moderator_enrols_an_authenticator_then_logs_in_with_password_and_code(
    site,
    django_user_model,
):
    mod = make_moderator(django_user_model, "nora")
    # The walk takes ~10 s and may cross a 30 s time step boundary: a code typed before it and
    # posted after it is accepted (tests/test_two_factor_time_steps.py pins that).

    # First login: the password alone does not open the admin; the moderator enrols an app.
    admin_password_step(site, "nora", MOD_PASSWORD)
    site.submit("#login-form input[type=submit]")
    site.wait_for_path("/moderation/two-factor/enrol/")
    assert site.find(".qr svg")
    site.shot("two-factor-enrol")
    secret = site.find("#totp-secret").text
    site.fill("#id_code", "000000" if code_from_key(secret) != "000000" else "111111")
    site.submit("main form button[type=submit]")
    assert "That code is not right" in site.find("main form .errorlist").text
    time.sleep(1.1)  # django-otp holds a device back for a second after a wrong code
    site.fill("#id_code", code_from_key(secret))
    site.submit("main form button[type=submit]")
    codes = [li.text for li in site.find_all("#recovery-codes li")]
    assert len(codes) == 10 and len(set(codes)) == 10
    site.shot("two-factor-recovery-codes")
    site.find("main a.button").click()
    site.wait_for_path("/admin/")
    assert site.find_all("#content-main a[href='/admin/profiles/profile/']")
    admin_logout(site)

    # Next login: password, then a wrong code (refused), then the app's code.
    admin_password_step(site, "nora", MOD_PASSWORD)
    site.submit("#login-form input[type=submit]")
    site.wait_for_path("/moderation/two-factor/verify/")
    device = TOTPDevice.objects.get(user=mod, confirmed=True)
    right = fresh_totp_code(device)
    site.fill("#id_code", str((int(right) + 1) % 1_000_000).zfill(6))
    site.submit("main form button[type=submit]")
    assert "That code is not right" in site.find("main form .errorlist").text
    site.get("/admin/")  # still not verified: the admin sends it back to the code step
    site.wait_for_path("/moderation/two-factor/verify/")
    time.sleep(1.1)
    site.fill("#id_code", fresh_totp_code(device))
    site.shot("two-factor-verify")
    site.submit("main form button[type=submit]")
    site.wait_for_path("/admin/")
    actions = list(AuditEvent.objects.filter(target="user nora").values_list("action", flat=True))
    assert sorted(actions) == ["2fa_enrol", "2fa_failed", "2fa_failed", "2fa_verify"]


def test_guessed_passwords_on_the_admin_login_end_in_a_lockout_page(
    site,
    moderator_account,
    settings,
):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        admin_password_step(site, "moira", f"guess-{attempt}")
        site.submit("#login-form input[type=submit]")
    site.wait_for("#locked-out")
    assert "Too many failed attempts" in site.find("#locked-out").text
    site.shot("locked-out")
    # The right password is refused too until the lock is lifted or runs out.
    admin_password_step(site, "moira", MOD_PASSWORD)
    site.submit("#login-form input[type=submit]")
    assert site.find_all("#locked-out")
