"""The production settings path: required variables fail loudly, `check --deploy` is clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "x7Qp-2mZ9!vL4rT8#kW1nB6yH3cJ5dF0gS_aE9uI2oP7lK4jM8",
    "DJANGO_ALLOWED_HOSTS": "profiles.example.com",
    # Upload rate limits shared by every web worker; `createcachetable` on deploy.
    "DJANGO_CACHE_URL": "database",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_warns_when_rate_limits_are_counted_per_process():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_CACHE_URL"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "moderation.W001" in result.stderr + result.stdout


# Every rate limit counted in the cache, switched off (0): the check has nothing to say.
NO_CACHED_LIMITS = {
    "MODERATION_UPLOAD_RATE_PER_USER": "0",
    "MODERATION_UPLOAD_RATE_PER_IP": "0",
    "MODERATION_EMAIL_RATE_PER_USER": "0",
    "MODERATION_EMAIL_RATE_PER_IP": "0",
    "MODERATION_APPEAL_RATE_PER_USER": "0",
    "MODERATION_REPORT_RATE_PER_USER": "0",
}


@pytest.mark.parametrize(
    "limit", ["MODERATION_EMAIL_RATE_PER_USER", "MODERATION_EMAIL_RATE_PER_IP"]
)
def test_check_deploy_warns_that_email_change_limits_need_a_shared_cache_too(limit):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_CACHE_URL"}
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env={**env, **NO_CACHED_LIMITS, limit: "5"}
    )
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert "moderation.W001" in output
    assert "email changes" in output and "uploads" not in output


def test_check_deploy_says_nothing_of_the_cache_when_no_rate_limit_uses_it():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_CACHE_URL"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**env, **NO_CACHED_LIMITS})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_required_variable(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_nonsense_max_distance_is_a_system_check_error():
    result = manage("check", env={"MODERATION_MAX_DISTANCE": "65"})
    assert result.returncode != 0
    assert "moderation.E001" in result.stderr


def test_oversized_request_gets_a_friendly_413(client, settings):
    settings.MODERATION_MAX_REQUEST_BYTES = 1000
    response = client.post("/profile/", data=b"x" * 2000, content_type="application/octet-stream")
    assert response.status_code == 413
    assert "too large" in response.content.decode()


def test_loading_the_wsgi_application_takes_its_objects_out_of_full_collections():
    """config/wsgi.py freezes what loading the app allocated: a full collection in a web worker
    walks what requests made since, not Django, the apps, numpy and Pillow again."""
    code = (
        "import gc\nfrom config.wsgi import application\n"
        "print(gc.get_freeze_count(), len(gc.get_objects()))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    frozen, still_tracked = map(int, result.stdout.split()[-2:])
    assert frozen > 50_000
    assert still_tracked < frozen // 10
