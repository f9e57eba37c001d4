"""S3-compatible object storage for public photos and quarantined originals, from the environment.

``config/settings.py`` calls :func:`s3_storages` with ``os.environ``. Without
``MODERATION_S3_BUCKET`` it returns ``{}`` and the site keeps media and quarantine on disk. With
it, ``STORAGES["default"]`` (public profile photos) and ``STORAGES["quarantine"]`` (flagged
originals and taken-down photos) become ``storages.backends.s3.S3Storage``:

- public: plain unsigned URLs (or ``https://<AWS_S3_CUSTOM_DOMAIN>/...``), the bucket (or prefix)
  is expected to be anonymously readable, objects carry a short ``Cache-Control`` so a takedown
  is not undone by caches for long;
- quarantine: its own bucket, or the same bucket under a separate prefix; never a custom domain,
  canned ACL ``private`` by default, only short-lived signed URLs. The site itself serves its
  files to staff through the permission-checked ``moderation:quarantined-file`` view.

Both refuse to overwrite (``file_overwrite=False``). Mistakes fail at start-up with
``ImproperlyConfigured``. The variables are listed in docs/operations.md ("Settings",
"Object storage").

Kept out of ``settings.py`` so the parsing can be tested with a plain dict for an environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

S3_BACKEND = "storages.backends.s3.S3Storage"

# Canned ACLs (https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html).
CANNED_ACLS = {
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
}
# Quarantine objects may only be written with an ACL that keeps them private. "none" sends no
# ACL at all, for buckets with ACLs disabled (AWS "bucket owner enforced", the default for new
# buckets), which refuse any ACL but bucket-owner-full-control.
QUARANTINE_ACLS = {"private", "bucket-owner-full-control", "none"}
ADDRESSING_STYLES = {"auto", "path", "virtual"}

DEFAULTS = {
    "AWS_S3_SIGNATURE_VERSION": "s3v4",
    "AWS_S3_URL_PROTOCOL": "https:",
    "AWS_S3_CONNECT_TIMEOUT": 5,
    "AWS_S3_READ_TIMEOUT": 20,
    "AWS_S3_MAX_ATTEMPTS": 3,
    "MODERATION_S3_QUARANTINE_ACL": "private",
    "MODERATION_S3_QUARANTINE_URL_EXPIRE": 300,
    "MODERATION_S3_PUBLIC_CACHE_SECONDS": 300,
}


def _str(env: Mapping[str, str], name: str, default: str = "") -> str:
    return (env.get(name) or default).strip()


def _int(env: Mapping[str, str], name: str, *, minimum: int, maximum: int) -> int:
    raw = _str(env, name)
    if not raw:
        return DEFAULTS[name]
    try:
        value = int(raw)
    except ValueError as e:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from e
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be from {minimum} to {maximum}, got {value}")
    return value


def _prefix(env: Mapping[str, str], name: str) -> str:
    """A key prefix ("location") without leading or trailing slashes."""
    value = _str(env, name).strip("/")
    if any(part in ("", ".", "..") for part in value.split("/")) and value:
        raise ImproperlyConfigured(f"{name} must be a plain key prefix like 'media', got {value!r}")
    return value


def _overlaps(a: str, b: str) -> bool:
    """Whether one prefix contains the other ("" contains everything)."""
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def s3_storages(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The ``STORAGES`` entries for S3, or ``{}`` when ``MODERATION_S3_BUCKET`` is not set."""
    public_bucket = _str(env, "MODERATION_S3_BUCKET")
    quarantine_bucket = _str(env, "MODERATION_S3_QUARANTINE_BUCKET")
    if not public_bucket:
        if quarantine_bucket:
            raise ImproperlyConfigured(
                "MODERATION_S3_QUARANTINE_BUCKET is set but MODERATION_S3_BUCKET is not: "
                "set both to keep media in S3, or neither to keep it on disk."
            )
        return {}
    if not quarantine_bucket:
        raise ImproperlyConfigured(
            "MODERATION_S3_QUARANTINE_BUCKET is required when MODERATION_S3_BUCKET is set: "
            "flagged originals must live apart from public photos (a private bucket, or the "
            "same bucket with a separate MODERATION_S3_QUARANTINE_PREFIX)."
        )
    public_prefix = _prefix(env, "MODERATION_S3_PREFIX")
    quarantine_prefix = _prefix(env, "MODERATION_S3_QUARANTINE_PREFIX")
    if quarantine_bucket == public_bucket and _overlaps(public_prefix, quarantine_prefix):
        raise ImproperlyConfigured(
            "The quarantine shares the public bucket "
            f"{public_bucket!r}, so MODERATION_S3_PREFIX ({public_prefix!r}) and "
            f"MODERATION_S3_QUARANTINE_PREFIX ({quarantine_prefix!r}) must both be set and "
            "must not contain each other; better, use a separate private bucket."
        )

    style = _str(env, "AWS_S3_ADDRESSING_STYLE").lower()
    if style and style not in ADDRESSING_STYLES:
        raise ImproperlyConfigured(
            f"AWS_S3_ADDRESSING_STYLE must be one of {sorted(ADDRESSING_STYLES)}, got {style!r}"
        )
    custom_domain = _str(env, "AWS_S3_CUSTOM_DOMAIN").rstrip("/")
    if "://" in custom_domain:
        raise ImproperlyConfigured(
            "AWS_S3_CUSTOM_DOMAIN is a host name (optionally with a path), without the scheme: "
            f"got {custom_domain!r}; the scheme is AWS_S3_URL_PROTOCOL."
        )
    url_protocol = _str(env, "AWS_S3_URL_PROTOCOL", DEFAULTS["AWS_S3_URL_PROTOCOL"])
    if url_protocol not in ("http:", "https:"):
        raise ImproperlyConfigured(
            f"AWS_S3_URL_PROTOCOL must be 'https:' or 'http:', got {url_protocol!r}"
        )
    public_acl = _str(env, "AWS_DEFAULT_ACL")
    if public_acl and public_acl not in CANNED_ACLS:
        raise ImproperlyConfigured(
            f"AWS_DEFAULT_ACL must be a canned ACL ({', '.join(sorted(CANNED_ACLS))}) or empty, "
            f"got {public_acl!r}"
        )
    quarantine_acl = _str(
        env, "MODERATION_S3_QUARANTINE_ACL", DEFAULTS["MODERATION_S3_QUARANTINE_ACL"]
    )
    if quarantine_acl not in QUARANTINE_ACLS:
        raise ImproperlyConfigured(
            f"MODERATION_S3_QUARANTINE_ACL must be one of {sorted(QUARANTINE_ACLS)}, "
            f"got {quarantine_acl!r}: quarantined originals are never public."
        )

    from botocore.config import Config  # only when S3 is used: the local default needs no boto

    client_config = Config(
        s3={"addressing_style": style} if style else {},
        signature_version=_str(
            env, "AWS_S3_SIGNATURE_VERSION", DEFAULTS["AWS_S3_SIGNATURE_VERSION"]
        ),
        connect_timeout=_int(env, "AWS_S3_CONNECT_TIMEOUT", minimum=1, maximum=300),
        read_timeout=_int(env, "AWS_S3_READ_TIMEOUT", minimum=1, maximum=600),
        retries={
            "mode": "standard",
            "total_max_attempts": _int(env, "AWS_S3_MAX_ATTEMPTS", minimum=1, maximum=10),
        },
    )
    common: dict[str, Any] = {
        # Credentials may also come from boto3's usual chain (instance role, ~/.aws) when unset.
        "access_key": _str(env, "AWS_ACCESS_KEY_ID") or None,
        "secret_key": _str(env, "AWS_SECRET_ACCESS_KEY") or None,
        "region_name": _str(env, "AWS_S3_REGION_NAME") or None,
        "endpoint_url": _str(env, "AWS_S3_ENDPOINT_URL") or None,
        # django-storages ignores addressing_style/signature_version once client_config is
        # given; they are inside it. Kept here too so the options read as configured.
        "addressing_style": style or None,
        "signature_version": client_config.signature_version,
        "client_config": client_config,
        "file_overwrite": False,
    }
    cache_seconds = _int(env, "MODERATION_S3_PUBLIC_CACHE_SECONDS", minimum=0, maximum=31_536_000)
    public = {
        **common,
        "bucket_name": public_bucket,
        "location": public_prefix,
        "querystring_auth": False,
        "custom_domain": custom_domain or None,
        "url_protocol": url_protocol,
        "default_acl": public_acl or None,
        # Names are random and never reused, but a taken-down photo must not live on in
        # browser and CDN caches for long.
        "object_parameters": {"CacheControl": f"public, max-age={cache_seconds}"},
    }
    quarantine = {
        **common,
        "bucket_name": quarantine_bucket,
        "location": quarantine_prefix,
        "querystring_auth": True,
        "querystring_expire": _int(
            env, "MODERATION_S3_QUARANTINE_URL_EXPIRE", minimum=1, maximum=3600
        ),
        "custom_domain": None,
        "default_acl": None if quarantine_acl == "none" else quarantine_acl,
        "object_parameters": {"CacheControl": "private, no-store"},
    }
    return {
        "default": {"BACKEND": S3_BACKEND, "OPTIONS": public},
        "quarantine": {"BACKEND": S3_BACKEND, "OPTIONS": quarantine},
    }
