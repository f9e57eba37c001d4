"""System checks for the moderation settings: nonsense values fail at start-up, with an id.

Which settings are checked, against what, and the hints' defaults come from the declarations
in ``moderation/conf.py``; a setting the project left out has its declared default.
"""

from collections.abc import Callable
from typing import NamedTuple

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.files.storage import InvalidStorageError, storages

from moderation.conf import DECLARATIONS, PREFIX, Kind, moderation_settings


class KindCheck(NamedTuple):
    allowed: Callable[[int], bool]  # given an int that is not a bool
    id: str
    message: str  # formatted with the setting's name and default
    hint: str | None = None


# What each declared kind allows, and the error otherwise. Kinds not listed are not checked.
KIND_CHECKS = {
    Kind.BITS: KindCheck(
        lambda value: 0 <= value <= 64,
        "moderation.E001",
        "{name} must be an integer from 0 to 64 (bits of a 64-bit hash).",
        hint="The default is {default}; see docs/matching.md, 'What it catches'.",
    ),
    Kind.POSITIVE: KindCheck(
        lambda value: value >= 1, "moderation.E002", "{name} must be a positive integer."
    ),
    Kind.OFF_OR_MORE: KindCheck(
        lambda value: value >= 0,
        "moderation.E005",
        "{name} must be an integer, 0 or more (0 turns it off).",
    ),
    Kind.PERCENT: KindCheck(
        lambda value: 0 <= value <= 100,
        "moderation.E007",
        "{name} must be an integer from 0 to 100 (a percentage).",
    ),
}


@register(Tags.compatibility)
def check_moderation_settings(app_configs=None, **kwargs):
    errors = []
    for kind, check in KIND_CHECKS.items():
        for setting in DECLARATIONS:
            if setting.kind is not kind:
                continue
            value = setting.value()
            if isinstance(value, int) and not isinstance(value, bool) and check.allowed(value):
                continue
            fields = {"name": setting.name, "default": setting.default}
            errors.append(
                Error(
                    check.message.format(**fields),
                    hint=check.hint and check.hint.format(**fields),
                    obj=f"settings.{setting.name}",
                    id=check.id,
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


# The limits counted in the cache (``ratelimit``), by what they limit: each needs the cache
# every web worker shares as much as the others.
CACHED_RATE_LIMITS = {
    "uploads": ("UPLOAD_RATE_PER_USER", "UPLOAD_RATE_PER_IP"),
    "email changes": ("EMAIL_RATE_PER_USER", "EMAIL_RATE_PER_IP"),
    "appeals": ("APPEAL_RATE_PER_USER",),
    "reports": ("REPORT_RATE_PER_USER",),
}


@register(Tags.security, deploy=True)
def check_rate_limit_cache(app_configs=None, **kwargs):
    """Rate limits need a cache every web worker shares (``check --deploy`` only): in a
    per-process cache each worker counts alone, so N workers allow N times the limit (for
    email changes: N times the confirmation emails the site can be made to send)."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if not backend.endswith(("LocMemCache", "DummyCache")):
        return []
    limited = [
        what
        for what, names in CACHED_RATE_LIMITS.items()
        if any(getattr(moderation_settings, name) for name in names)
    ]
    if not limited:
        return []
    return [
        Warning(
            f"The rate limits on {', '.join(limited)} are counted in a per-process cache: "
            "with several web workers each counts alone, and a restart forgets them.",
            hint="Set DJANGO_CACHE_URL to a redis:// URL or to 'database'.",
            obj="settings.CACHES",
            id="moderation.W001",
        )
    ]


@register(Tags.compatibility)
def check_worker_lease(app_configs=None, **kwargs):
    """A lease shorter than two heartbeats would hand a live worker's task to another worker
    whenever one heartbeat is late (a busy database), running it twice at once."""
    heartbeat = moderation_settings.WORKER_HEARTBEAT_SECONDS
    lease = moderation_settings.WORKER_LEASE_SECONDS
    if isinstance(heartbeat, int) and isinstance(lease, int) and lease < 2 * heartbeat:
        return [
            Error(
                "MODERATION_WORKER_LEASE_SECONDS must be at least twice "
                "MODERATION_WORKER_HEARTBEAT_SECONDS.",
                hint=f"Now {lease} s and {heartbeat} s; the defaults are 30 s and 5 s.",
                obj=f"settings.{PREFIX}WORKER_LEASE_SECONDS",
                id="moderation.E006",
            )
        ]
    return []
