"""The S3 storage settings (config/s3_storage.py): what each variable does, and mistakes that
must stop the site at start-up. No server needed; tests/test_s3_storage.py uses a real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.s3_storage import s3_storages

ROOT = Path(__file__).resolve().parent.parent
BOTH = {"MODERATION_S3_BUCKET": "photos", "MODERATION_S3_QUARANTINE_BUCKET": "held"}


def options(env: dict[str, str]) -> tuple[dict, dict]:
    storages = s3_storages(env)
    assert storages["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    assert storages["quarantine"]["BACKEND"] == "storages.backends.s3.S3Storage"
    return storages["default"]["OPTIONS"], storages["quarantine"]["OPTIONS"]


def test_no_bucket_keeps_the_local_default():
    assert s3_storages({}) == {}
    assert s3_storages({"MODERATION_S3_BUCKET": ""}) == {}


def test_everything_comes_from_the_environment():
    public, quarantine = options(
        {
            **BOTH,
            "AWS_S3_ENDPOINT_URL": "https://s3.example.net",
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
            "AWS_S3_REGION_NAME": "eu-west-1",
            "AWS_S3_ADDRESSING_STYLE": "virtual",
            "AWS_S3_CUSTOM_DOMAIN": "media.example.net",
            "AWS_DEFAULT_ACL": "public-read",
            "MODERATION_S3_PREFIX": "/media/",
            "MODERATION_S3_QUARANTINE_PREFIX": "held",
        }
    )
    for opts in (public, quarantine):
        assert opts["endpoint_url"] == "https://s3.example.net"
        assert opts["access_key"] == "AKIDEXAMPLE"
        assert opts["secret_key"] == "not-a-real-secret"  # noqa: S105
        assert opts["region_name"] == "eu-west-1"
        assert opts["file_overwrite"] is False
        config = opts["client_config"]
        assert config.s3 == {"addressing_style": "virtual"}
        assert config.signature_version == "s3v4"
        assert (config.connect_timeout, config.read_timeout) == (5, 20)
        assert config.retries == {"mode": "standard", "total_max_attempts": 3}

    assert public["bucket_name"] == "photos"
    assert public["location"] == "media"
    assert public["querystring_auth"] is False
    assert public["custom_domain"] == "media.example.net"
    assert public["url_protocol"] == "https:"
    assert public["default_acl"] == "public-read"
    assert public["object_parameters"] == {"CacheControl": "public, max-age=300"}

    assert quarantine["bucket_name"] == "held"
    assert quarantine["location"] == "held"
    assert quarantine["querystring_auth"] is True
    assert quarantine["querystring_expire"] == 300
    assert quarantine["custom_domain"] is None  # never served from the public domain
    assert quarantine["default_acl"] == "private"
    assert quarantine["object_parameters"] == {"CacheControl": "private, no-store"}


def test_unset_optional_variables_leave_boto3_defaults():
    public, quarantine = options(BOTH)
    for opts in (public, quarantine):
        assert opts["endpoint_url"] is None  # AWS itself
        assert opts["access_key"] is None and opts["secret_key"] is None  # boto3's chain
        assert opts["region_name"] is None
        assert opts["client_config"].s3 == {}
    assert public["custom_domain"] is None
    assert public["default_acl"] is None
    assert public["location"] == quarantine["location"] == ""


def test_tunable_numbers_and_acl():
    public, quarantine = options(
        {
            **BOTH,
            "AWS_S3_CONNECT_TIMEOUT": "2",
            "AWS_S3_READ_TIMEOUT": "7",
            "AWS_S3_MAX_ATTEMPTS": "1",
            "MODERATION_S3_QUARANTINE_URL_EXPIRE": "60",
            "MODERATION_S3_PUBLIC_CACHE_SECONDS": "0",
            "MODERATION_S3_QUARANTINE_ACL": "none",
            "AWS_S3_URL_PROTOCOL": "http:",
        }
    )
    config = quarantine["client_config"]
    assert (config.connect_timeout, config.read_timeout) == (2, 7)
    assert config.retries["total_max_attempts"] == 1
    assert quarantine["querystring_expire"] == 60
    assert quarantine["default_acl"] is None  # for buckets with ACLs disabled
    assert public["object_parameters"] == {"CacheControl": "public, max-age=0"}
    assert public["url_protocol"] == "http:"


def test_same_bucket_with_separate_prefixes_is_allowed():
    public, quarantine = options(
        {
            "MODERATION_S3_BUCKET": "site",
            "MODERATION_S3_QUARANTINE_BUCKET": "site",
            "MODERATION_S3_PREFIX": "media",
            "MODERATION_S3_QUARANTINE_PREFIX": "quarantine",
        }
    )
    assert public["bucket_name"] == quarantine["bucket_name"] == "site"
    assert (public["location"], quarantine["location"]) == ("media", "quarantine")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"MODERATION_S3_BUCKET": "photos"},
            "MODERATION_S3_QUARANTINE_BUCKET is required",
            id="no-quarantine-bucket",
        ),
        pytest.param(
            {"MODERATION_S3_QUARANTINE_BUCKET": "held"},
            "MODERATION_S3_BUCKET is not",
            id="quarantine-without-public",
        ),
        pytest.param(
            {"MODERATION_S3_BUCKET": "site", "MODERATION_S3_QUARANTINE_BUCKET": "site"},
            "must not contain each other",
            id="same-bucket-no-prefixes",
        ),
        pytest.param(
            {
                "MODERATION_S3_BUCKET": "site",
                "MODERATION_S3_QUARANTINE_BUCKET": "site",
                "MODERATION_S3_QUARANTINE_PREFIX": "quarantine",
            },
            "must not contain each other",
            id="same-bucket-public-prefix-is-everything",
        ),
        pytest.param(
            {
                "MODERATION_S3_BUCKET": "site",
                "MODERATION_S3_QUARANTINE_BUCKET": "site",
                "MODERATION_S3_PREFIX": "media",
                "MODERATION_S3_QUARANTINE_PREFIX": "media/held",
            },
            "must not contain each other",
            id="same-bucket-nested-prefixes",
        ),
        pytest.param(
            {
                "MODERATION_S3_BUCKET": "site",
                "MODERATION_S3_QUARANTINE_BUCKET": "site",
                "MODERATION_S3_PREFIX": "media",
                "MODERATION_S3_QUARANTINE_PREFIX": "media",
            },
            "must not contain each other",
            id="same-bucket-same-prefix",
        ),
        pytest.param(
            {**BOTH, "MODERATION_S3_QUARANTINE_ACL": "public-read"},
            "quarantined originals are never public",
            id="public-quarantine-acl",
        ),
        pytest.param({**BOTH, "AWS_DEFAULT_ACL": "public"}, "AWS_DEFAULT_ACL", id="bad-acl"),
        pytest.param(
            {**BOTH, "AWS_S3_ADDRESSING_STYLE": "dns"}, "AWS_S3_ADDRESSING_STYLE", id="bad-style"
        ),
        pytest.param(
            {**BOTH, "AWS_S3_CUSTOM_DOMAIN": "https://cdn.example.net"},
            "without the scheme",
            id="domain-with-scheme",
        ),
        pytest.param(
            {**BOTH, "AWS_S3_URL_PROTOCOL": "ftp:"}, "AWS_S3_URL_PROTOCOL", id="bad-protocol"
        ),
        pytest.param(
            {**BOTH, "AWS_S3_READ_TIMEOUT": "soon"}, "must be an integer", id="not-a-number"
        ),
        pytest.param(
            {**BOTH, "AWS_S3_MAX_ATTEMPTS": "0"}, "must be from 1 to 10", id="zero-attempts"
        ),
        pytest.param(
            {**BOTH, "MODERATION_S3_QUARANTINE_URL_EXPIRE": "86400"},
            "must be from 1 to 3600",
            id="long-lived-quarantine-urls",
        ),
        pytest.param(
            {**BOTH, "MODERATION_S3_PREFIX": "media/../held"},
            "plain key prefix",
            id="dotdot-prefix",
        ),
    ],
)
def test_mistakes_fail_at_start(env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        s3_storages(env)


# --- through config/settings.py, as the site starts --------------------------------------------


def run_django(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODERATION_S3_", "AWS_", "DJANGO_"))
    }
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_settings_switch_to_s3_only_when_the_bucket_is_set():
    show = (
        "from django.conf import settings; from django.core.files.storage import storages; "
        "print(settings.STORAGES['default']['BACKEND']); "
        "print(type(storages['default']).__name__, type(storages['quarantine']).__name__)"
    )
    local = run_django(show, {})
    assert local.returncode == 0, local.stderr
    assert local.stdout.split("\n")[:2] == [
        "django.core.files.storage.FileSystemStorage",
        "FileSystemStorage PrivateFileSystemStorage",
    ]

    s3 = run_django(show, {**BOTH, "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert s3.returncode == 0, s3.stderr
    assert s3.stdout.split("\n")[:2] == ["storages.backends.s3.S3Storage", "S3Storage S3Storage"]


def test_site_refuses_to_start_without_a_quarantine_bucket():
    result = run_django("pass", {"MODERATION_S3_BUCKET": "photos"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "MODERATION_S3_QUARANTINE_BUCKET is required" in result.stderr
