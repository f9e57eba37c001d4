"""Shared fixtures: every test gets its own media and quarantine folders and a fresh index."""

from __future__ import annotations

import pytest

from moderation import matching


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
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "quarantine"), "base_url": None},
        },
    }
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_banned_set():
    """Each test's rows are rolled back, so no process-wide index may outlive a test."""
    matching.reset_banned_set()
    yield
    matching.reset_banned_set()


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
