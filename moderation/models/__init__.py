"""The moderation app's models, one module per thing they hold.

- ``banned_set``: hash lists, flags, their variant fingerprints and the change log;
- ``records``: the audit trail, refused uploads and shadow hits;
- ``review``: the review queue, the allowlist and queue-email subscriptions;
- ``operations``: reindex runs, the ranges workers take, and sweeps' state;
- ``quarantine``: the private storage of flagged originals and evidence.

Every public name is re-exported here: the code imports ``from moderation.models``, and the
migrations refer to ``moderation.models.quarantine_storage`` and
``moderation.models.default_hash_list_id``.
"""

from moderation.models.banned_set import (
    DEFAULT_HASH_LIST,
    BannedSetChange,
    FingerprintVariant,
    FlaggedFingerprint,
    FlaggedFingerprintQuerySet,
    HashList,
    default_hash_list_id,
)
from moderation.models.operations import ReindexRun, Sweep, WorkRange
from moderation.models.quarantine import QuarantineStorage, quarantine_storage
from moderation.models.records import (
    AuditEvent,
    RefusedUpload,
    RefusedUploadQuerySet,
    ShadowHit,
)
from moderation.models.review import (
    AllowedMatch,
    AllowedMatchQuerySet,
    ReviewItem,
    ReviewItemQuerySet,
    ReviewSubscription,
)

__all__ = [
    "DEFAULT_HASH_LIST",
    "AllowedMatch",
    "AllowedMatchQuerySet",
    "AuditEvent",
    "BannedSetChange",
    "FingerprintVariant",
    "FlaggedFingerprint",
    "FlaggedFingerprintQuerySet",
    "HashList",
    "QuarantineStorage",
    "RefusedUpload",
    "RefusedUploadQuerySet",
    "ReindexRun",
    "ReviewItem",
    "ReviewItemQuerySet",
    "ReviewSubscription",
    "ShadowHit",
    "Sweep",
    "WorkRange",
    "default_hash_list_id",
    "quarantine_storage",
]
