"""Shared fixtures: every test gets its own media and quarantine folders and a fresh index."""

from __future__ import annotations

import os

import pytest
from django.conf import settings as django_settings

from moderation import banned_set
from tests import scheduling

# Fixtures shared by the admin, access and browser test modules.
pytest_plugins = [
    "tests.access_roles",
    "tests.admin_pages",
    "tests.browser_site",
    "tests.record_scenes",
    "tests.review_scenes",
]

SERVICE_MARKERS = ("postgres", "s3", "worker", "browser", "redis")


# Fixtures through which a test reaches the database (pytest-django's, and so every fixture
# built on them: ``item.fixturenames`` is the whole closure).
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}
)


def pytest_addoption(parser):
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="Deselect tests that never touch the database (make test's second run: they "
        "ran in the first, and no database can change their outcome).",
    )


def pytest_configure(config):
    """Under pytest-xdist, files go to the workers in the order collected (longest first, see
    tests/scheduling.py), not re-sorted by how many tests each has."""
    if getattr(config.option, "loadscopereorder", False):
        config.option.loadscopereorder = False


def touches_database(item) -> bool:
    return (
        item.get_closest_marker("django_db") is not None
        or "postgres" in item.keywords
        or not DATABASE_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked ``postgres`` need PostgreSQL: on SQLite they are skipped, and said so.
    With ``--database-tests-only``, tests that never touch the database are deselected."""
    if config.getoption("--database-tests-only"):
        kept = [item for item in items if touches_database(item)]
        if len(kept) < len(items):
            config.hook.pytest_deselected(items=[i for i in items if not touches_database(i)])
            items[:] = kept
    engine = django_settings.DATABASES["default"]["ENGINE"]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Every worker collects, and all must agree: the order is the files' recorded durations.
        scheduling.longest_files_first(items, "postgresql" if "postgresql" in engine else "sqlite")
    if "postgresql" in engine:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: this run uses SQLite (make test runs both)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A run that skipped tests needing a real service says so loudly, never silently."""
    skipped = terminalreporter.stats.get("skipped", [])
    by_marker: dict[str, list[str]] = {}
    for report in skipped:
        for marker in SERVICE_MARKERS:
            if marker in report.keywords:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
                by_marker.setdefault(marker, []).append(reason)
    if not by_marker:
        return
    terminalreporter.section("SERVICE TESTS SKIPPED", sep="!", red=True, bold=True)
    for marker, reasons in sorted(by_marker.items()):
        first = sorted(set(reasons))[0] if reasons else ""
        terminalreporter.write_line(f"{marker}: {len(reasons)} test(s) skipped — {first}", red=True)


@pytest.fixture(autouse=True)
def isolated_storage(settings, tmp_path):
    """Public media and quarantine in per-test temporary folders."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media"), "base_url": "/media/"},
        },
        "quarantine": {
            "BACKEND": "moderation.storage.PrivateFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "quarantine"), "base_url": None},
        },
    }
    return tmp_path


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Real hashers cost ~0.3 s per user; the tests are not about password strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def verified_staff_sessions(request, monkeypatch):
    """A staff user logged in with ``Client.force_login`` has verified a second factor, as after
    the two-step login (tests/two_factor.py); ``@pytest.mark.password_only`` opts out."""
    if request.node.get_closest_marker("password_only"):
        return
    from django.test import Client

    from moderation.two_factor import needs_two_factor
    from tests.two_factor import verify_session

    password_login = Client.force_login

    def force_login(self, user, backend=None):
        password_login(self, user, backend)
        if needs_two_factor(user):
            verify_session(self, user)

    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture(autouse=True)
def empty_cache():
    """Upload rate-limit counters live in the (process-wide) cache: none outlives a test."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fresh_banned_set(settings, tmp_path, monkeypatch):
    """Each test's rows are rolled back, so no process-wide index may outlive a test; banned-set
    snapshots (this process's and the processes it starts) go under the test's own folder."""
    settings.MODERATION_SNAPSHOT_DIR = str(tmp_path / "banned-set")
    monkeypatch.setenv("MODERATION_SNAPSHOT_DIR", settings.MODERATION_SNAPSHOT_DIR)
    banned_set.reset()
    yield
    banned_set.reset()


@pytest.fixture(autouse=True)
def fresh_stored_index():
    """Nor may the index of stored images, or the kinds' ids (a flush renumbers them)."""
    from moderation import stored_hashes, stored_index

    stored_index.reset()
    stored_hashes.forget_marker_ids()
    yield
    stored_index.reset()
    stored_hashes.forget_marker_ids()


@pytest.fixture(autouse=True)
def fresh_signal_set():
    """Nor may the PDQ index of the hash lists' entries."""
    from moderation import signal_set

    signal_set.reset()
    yield
    signal_set.reset()


@pytest.fixture
def media_files(isolated_storage):
    """A callable listing every file under public media (relative paths)."""

    def list_files(folder: str = "media") -> list[str]:
        root = isolated_storage / folder
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return list_files


@pytest.fixture
def quarantine_files(isolated_storage):
    """A callable listing every file in quarantine storage (relative paths)."""

    def list_files() -> list[str]:
        root = isolated_storage / "quarantine"
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return list_files


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-123")


@pytest.fixture
def moderator(django_user_model):
    from django.contrib.auth.models import Permission

    mod = django_user_model.objects.create_user(
        username="mod", password="pw-mod-123", is_staff=True
    )
    mod.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=["moderation", "profiles"],
        )
    )
    return mod


# --- S3 ------------------------------------------------------------------------------------
# Tests marked `s3` run against a real SeaweedFS server started once per session on 127.0.0.1;
# `s3_for_marked_tests` points their STORAGES at it. Fixtures and helpers: tests/s3server.py.
from tests.s3server import s3, s3_for_marked_tests, s3_server  # noqa: E402, F401


@pytest.fixture
def make_profile(django_user_model):
    """A callable: a user's profile, with ``img`` stored as its photo the way an upload is."""
    from profiles.models import Profile
    from profiles.photos import profile_set_photo
    from profiles.services import profile_for
    from tests import images

    def make(username: str, img=None) -> Profile:
        user = django_user_model.objects.create_user(username=username, password=f"pw-{username}")
        profile = profile_for(user=user)
        if img is not None:
            profile_set_photo(profile=profile, upload=images.upload(img, f"{username}.jpg"))
        return Profile.objects.get(pk=profile.pk)

    return make


@pytest.fixture
def narrow_distances(settings):
    """Block within 4 bits, review up to 10: a copy 7 bits away is a near miss. For the review
    queue's modules (``pytest.mark.usefixtures("narrow_distances")``)."""
    settings.MODERATION_MAX_DISTANCE = 4
    settings.MODERATION_MAX_UNCONFIRMED_DISTANCE = 4
    settings.MODERATION_REVIEW_DISTANCE = 10


@pytest.fixture
def upload(client, user, django_capture_on_commit_callbacks):
    """A callable: ``user`` uploads ``img`` through the real profile form (as a PNG, so the
    pixels arrive unchanged) and the after-commit work (the recheck) runs."""
    from django.urls import reverse

    from tests import images

    client.force_login(user)

    def post(img):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                reverse("profile-edit"),
                {"display_name": "Alice", "photo": images.upload(img, "me.png", "PNG")},
            )

    return post


@pytest.fixture
def dev_media_urls(settings):
    """config.urls as ``runserver`` loads it: DEBUG on, media served by Django from
    MEDIA_ROOT; put back as it was afterwards."""
    import importlib

    from django.urls import clear_url_caches

    import config.urls

    settings.DEBUG = True
    importlib.reload(config.urls)
    clear_url_caches()
    yield
    settings.DEBUG = False
    importlib.reload(config.urls)
    clear_url_caches()
