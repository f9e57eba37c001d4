"""System checks for the moderation settings: nonsense values fail at start-up, with an id."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.files.storage import InvalidStorageError, storages


@register(Tags.compatibility)
def check_moderation_settings(app_configs=None, **kwargs):
    errors = []
    for name, default in (
        ("MODERATION_MAX_DISTANCE", 12),
        ("MODERATION_MAX_CONFIRM_DISTANCE", 16),
        ("MODERATION_MAX_UNCONFIRMED_DISTANCE", 6),
        ("MODERATION_MIN_INFORMATION", 20),
        ("MODERATION_REVIEW_DISTANCE", 16),
        ("MODERATION_REVIEW_CONFIRM_DISTANCE", 18),
        ("MODERATION_ALLOWLIST_DISTANCE", 2),
    ):
        value = getattr(settings, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 64:
            errors.append(
                Error(
                    f"{name} must be an integer from 0 to 64 (bits of a 64-bit hash).",
                    hint=f"The default is {default}; see README 'What it catches'.",
                    obj=f"settings.{name}",
                    id="moderation.E001",
                )
            )
    for name, minimum in (
        ("MODERATION_MAX_UPLOAD_BYTES", 1),
        ("MODERATION_MAX_PIXELS", 1),
        ("MODERATION_MIN_SIDE", 1),
        ("MODERATION_MAX_FRAMES", 1),
        ("MODERATION_MAX_METADATA_BYTES", 1),
        ("MODERATION_UPLOAD_RATE_WINDOW", 1),
    ):
        value = getattr(settings, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            errors.append(
                Error(
                    f"{name} must be a positive integer.",
                    obj=f"settings.{name}",
                    id="moderation.E002",
                )
            )
    for name in (
        "MODERATION_UPLOAD_RATE_PER_USER",
        "MODERATION_UPLOAD_RATE_PER_IP",
        "MODERATION_TRUSTED_PROXY_COUNT",
        "MODERATION_MAX_DISMISSALS",
        "MODERATION_REVIEW_NOTIFY_MINUTES",
    ):
        value = getattr(settings, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            errors.append(
                Error(
                    f"{name} must be an integer, 0 or more (0 turns it off).",
                    obj=f"settings.{name}",
                    id="moderation.E005",
                )
            )
    try:
        quarantine = storages["quarantine"]
        default = storages["default"]
    except InvalidStorageError:
        errors.append(
            Error(
                'STORAGES must define a "quarantine" storage for flagged originals.',
                id="moderation.E003",
            )
        )
    else:
        if getattr(quarantine, "location", object()) == getattr(default, "location", None) and (
            getattr(quarantine, "bucket_name", None) == getattr(default, "bucket_name", None)
        ):
            errors.append(
                Error(
                    "The quarantine storage must not be the public media storage.",
                    hint="Give STORAGES['quarantine'] its own folder, bucket or prefix.",
                    id="moderation.E004",
                )
            )
    return errors


@register(Tags.security, deploy=True)
def check_rate_limit_cache(app_configs=None, **kwargs):
    """Upload rate limits need a cache every web worker shares (``check --deploy`` only)."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    rate_limited = getattr(settings, "MODERATION_UPLOAD_RATE_PER_USER", 0) or getattr(
        settings, "MODERATION_UPLOAD_RATE_PER_IP", 0
    )
    if rate_limited and backend.endswith(("LocMemCache", "DummyCache")):
        return [
            Warning(
                "Upload rate limits are counted in a per-process cache: with several web "
                "workers each counts alone, and a restart forgets them.",
                hint="Set DJANGO_CACHE_URL to a redis:// URL or to 'database'.",
                obj="settings.CACHES",
                id="moderation.W001",
            )
        ]
    return []
