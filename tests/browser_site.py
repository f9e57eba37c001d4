"""The browser tests' shared pieces (``-m browser``), registered in ``tests/conftest.py``.

Fixtures: ``driver`` (one headless Chromium per test module), ``site`` (the browser on a fresh
session of the live server, with a screenshot recorder) and ``moderator_account`` (a moderator
with an authenticator app enrolled). Helpers: ``Site``, the logins and logouts, the passwords.
How the browser, the live server and media fit together: ``tests/test_browser.py``.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django_otp.plugins.otp_totp.models import TOTPDevice
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from profiles.management.commands.demo_setup import MODERATOR_PERMISSIONS
from tests import browser, images
from tests.two_factor import enrolled_device, fresh_totp_code

GENERIC = "This image can't be used as a profile photo."
USER_PASSWORD = "a-long-pass-phrase-42"
MOD_PASSWORD = "moderate-carefully-7"


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """One Chromium for the module (about 1.5 s to start); each test clears its cookies."""
    browser.require_browser()
    drv = browser.start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield drv
    drv.quit()


@pytest.fixture
def site(driver, live_server, request):
    """The browser on a fresh session of the live server, with a screenshot recorder."""
    driver.get(live_server.url + "/")
    driver.delete_all_cookies()
    folder = request.config.rootpath / "artifacts" / screenshots_folder() / request.node.name
    return Site(driver, live_server.url, browser.Screenshots(driver, folder))


def screenshots_folder() -> str:
    """``screenshots`` on SQLite, ``screenshots-postgresql`` on PostgreSQL: ``make test`` runs
    the two at the same time, and each browser test in both."""
    return "screenshots" if connection.vendor == "sqlite" else f"screenshots-{connection.vendor}"


def make_moderator(django_user_model, username: str):
    """Staff with the permissions the "Moderators" group gets (see demo_setup)."""
    mod = django_user_model.objects.create_user(
        username=username, password=MOD_PASSWORD, is_staff=True
    )
    mod.user_permissions.add(
        *(
            Permission.objects.get(content_type__app_label=app, codename=codename)
            for app, codename in MODERATOR_PERMISSIONS
        )
    )
    return mod


@pytest.fixture
def moderator_account(django_user_model):
    """A moderator with an authenticator app already enrolled (its key is in the database, so
    ``admin_login`` computes the app's code, as the phone would)."""
    mod = make_moderator(django_user_model, "moira")
    enrolled_device(mod)
    return mod


class Site:
    def __init__(self, driver, base_url: str, shot: browser.Screenshots):
        self.driver = driver
        self.base_url = base_url
        self.shot = shot

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str) -> None:
        self.driver.get(self.url(path))

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, css: str):
        visible = EC.visibility_of_element_located((By.CSS_SELECTOR, css))
        return browser.wait(self.driver).until(visible)

    def wait_for_text(self, css: str, text: str):
        present = EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
        browser.wait(self.driver).until(present)
        return self.find(css)

    def wait_for_path(self, path: str) -> None:
        browser.wait(self.driver).until(
            lambda d: d.current_url.split("?")[0] == self.url(path),
            f"expected to land on {path}",
        )

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def submit(self, css: str) -> None:
        """Click a submit button and wait for the next page to replace this one."""
        old_html = self.find("html")
        self.find(css).click()
        browser.wait(self.driver).until(browser.page_replaced(old_html))

    def messages(self, css: str = ".messages li, .messagelist li") -> list[str]:
        return [li.text for li in self.find_all(css)]


def write_jpeg(path, img, **params):
    path.write_bytes(images.encode(img, "JPEG", **params))
    return path


def site_login(site: Site, username: str, password: str) -> None:
    site.get("/login/")
    site.fill("#id_username", username)
    site.fill("#id_password", password)
    site.shot(f"login-as-{username}")
    site.submit("main form button[type=submit]")


def admin_password_step(site: Site, username: str, password: str) -> None:
    site.get("/admin/")
    site.wait_for_path("/admin/login/")
    site.fill("#id_username", username)
    site.fill("#id_password", password)


def admin_login(site: Site, username: str, password: str) -> None:
    """Password, then the code the moderator's authenticator app shows now."""
    admin_password_step(site, username, password)
    site.shot("admin-login")
    site.submit("#login-form input[type=submit], #login-form button[type=submit]")
    site.wait_for_path("/moderation/two-factor/verify/")
    device = TOTPDevice.objects.get(user__username=username, confirmed=True)
    site.fill("#id_code", fresh_totp_code(device))
    site.submit("main form button[type=submit]")
    site.wait_for_path("/admin/")


def site_logout(site: Site) -> None:
    site.submit("header form button")  # the "Log out" button in the site header
    assert site.find_all("header a[href='/login/']"), "still logged in"


def admin_logout(site: Site) -> None:
    site.submit("#logout-form button")
    site.get("/")
    assert site.find_all("header a[href='/login/']"), "still logged in"
