"""Driving Debian's headless Chromium from the browser tests (``@pytest.mark.browser``).

Why Selenium and not Playwright: Playwright's sync API runs an asyncio event loop in the test
thread, and Django then refuses ORM calls from that thread (``SynchronousOnlyOperation``) unless
``DJANGO_ALLOW_ASYNC_UNSAFE`` is set for the whole run; the tests here check the database between
browser steps, so that would switch off a safety check for every test. Selenium is plain
blocking HTTP to ChromeDriver, needs nothing but the two Debian binaries, and with an explicit
``Service(path)`` it never runs Selenium Manager, so no driver or browser is ever downloaded.

The browser is Debian's ``chromium`` with its matching ``chromium-driver`` (installed by
``.ci/run``); ``CHROMIUM_BINARY`` and ``CHROMEDRIVER_PATH`` override the paths. A missing
browser skips the tests locally with the reason, and fails them when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Belt and braces: even if some code path reached Selenium Manager, it must not download.
os.environ.setdefault("SE_OFFLINE", "true")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_PATH", "/usr/bin/chromedriver")

# What this machine's Chromium needs: no sandbox as root, no GPU, and no background traffic
# (the closed network refuses it, noisily). A fresh profile directory per driver.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--lang=en-US",
]

WAIT_SECONDS = 15


def missing() -> str | None:
    """Why the browser can't run here, or None when it can."""
    for label, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return (
                f"{label} not found at {path}: install Debian's chromium and chromium-driver "
                "(apt-get install -y chromium chromium-driver; .ci/run does this)"
            )
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_browser() -> None:
    """Skip (locally) or fail (in CI) when Chromium or ChromeDriver is missing."""
    reason = missing()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def start_chromium(profile_dir: Path) -> WebDriver:
    """A headless Chromium on a new, empty profile, driven through Debian's ChromeDriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    # No "save password?" or leak-check prompts in the way of the login forms.
    options.add_experimental_option(
        "prefs",
        {"credentials_enable_service": False, "profile.password_manager_enabled": False},
    )
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(15)
    return driver


def wait(driver: WebDriver, timeout: float = WAIT_SECONDS) -> WebDriverWait:
    return WebDriverWait(driver, timeout)


def page_replaced(old_html: WebElement):
    """A wait condition: the page that held ``old_html`` has been replaced by another.

    Selenium's ``staleness_of`` catches only ``StaleElementReferenceException``; while the
    next page is being committed, ChromeDriver can instead answer "Node with given id does not
    belong to the document" (seen under load), which means the same thing.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def replaced(driver: WebDriver) -> bool:
        try:
            old_html.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
        return False

    return replaced


def image_width(driver: WebDriver, img: WebElement) -> int:
    """The decoded width of an <img> once it has finished loading (0 if it failed)."""
    return driver.execute_script(
        "return arguments[0].complete ? arguments[0].naturalWidth : -1;", img
    )


def wait_for_image(driver: WebDriver, img: WebElement) -> int:
    """Wait until the image has loaded or failed; return its natural width."""
    wait(driver).until(lambda d: image_width(d, img) >= 0)
    return image_width(driver, img)


def fetch_status(driver: WebDriver, url: str) -> int:
    """The HTTP status the browser gets for ``url`` (same-origin fetch, with its cookies)."""
    return driver.execute_async_script(
        """
        const [url, done] = arguments;
        fetch(url, {cache: "no-store", credentials: "same-origin"})
            .then(r => done(r.status), e => done(-1));
        """,
        url,
    )


class Screenshots:
    """Numbered screenshots of one test: ``<folder>/01-step.png``, ``02-step.png``, ..."""

    def __init__(self, driver: WebDriver, folder: Path):
        self.driver = driver
        self.folder = folder
        self.taken: list[Path] = []
        shutil.rmtree(folder, ignore_errors=True)  # no stale steps from an earlier run
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"could not save screenshot {path}")
        self.taken.append(path)
        return path
