"""The moderation app's models, one module per thing they hold.

- ``banned_set``: hash lists, flags, their variant fingerprints and the change log;
- ``records``: the audit trail, refused uploads and shadow hits;
- ``review``: the review queue, the allowlist and queue-email subscriptions;
- ``operations``: reindex runs, the ranges workers take, and sweeps' state;
- ``signals``: PDQ, MD5 and SHA-256 list entries, their imports and change log;
- ``stored_index``: the hashes of stored images, for sweeps (and each kind's completeness);
- ``appeals``: statements of reasons to people whose photo was taken down or refused, and
  their appeals;
- ``reports``: photos people reported, and each person's report;
- ``wellness``: each moderator's image display preference and images viewed per day;
- ``probers``: uploaders escalated for probing the threshold;
- ``quarantine``: the private storage of flagged originals and evidence;
- ``api``: the tokens of the services that call the lookup API;
- ``background``: worker heartbeats, owed emails and failed tasks (background work that
  survives the death of its processes).

Every public name is re-exported here: the code imports ``from moderation.models``, and the
migrations refer to ``moderation.models.quarantine_storage`` and
``moderation.models.default_hash_list_id``.
"""

from moderation.models.api import ApiToken, ApiTokenQuerySet
from moderation.models.appeals import (
    APPEAL_MAX_CHARS,
    Appeal,
    AppealQuerySet,
    Notice,
    NoticeQuerySet,
)
from moderation.models.background import EmailDelivery, FailedTask, WorkerHeartbeat
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
from moderation.models.probers import ProberEscalation, ProberEscalationQuerySet
from moderation.models.quarantine import QuarantineStorage, quarantine_storage
from moderation.models.records import (
    AuditEvent,
    RefusedUpload,
    RefusedUploadQuerySet,
    ShadowHit,
)
from moderation.models.reports import (
    REPORT_MAX_CHARS,
    Report,
    ReportFiling,
    ReportQuerySet,
)
from moderation.models.review import (
    AllowedMatch,
    AllowedMatchQuerySet,
    ReviewItem,
    ReviewItemQuerySet,
    ReviewSubscription,
)
from moderation.models.signals import (
    SignalChange,
    SignalEntry,
    SignalEntryQuerySet,
    SignalImport,
    SignalImportRow,
    SignalType,
)
from moderation.models.stored_index import StoredHash, StoredHashTarget, StoredSignal
from moderation.models.wellness import ImageViewDay, ModeratorPreference

__all__ = [
    "APPEAL_MAX_CHARS",
    "DEFAULT_HASH_LIST",
    "ApiToken",
    "ApiTokenQuerySet",
    "AllowedMatch",
    "AllowedMatchQuerySet",
    "Appeal",
    "AppealQuerySet",
    "AuditEvent",
    "BannedSetChange",
    "EmailDelivery",
    "FailedTask",
    "FingerprintVariant",
    "FlaggedFingerprint",
    "FlaggedFingerprintQuerySet",
    "HashList",
    "ImageViewDay",
    "ModeratorPreference",
    "Notice",
    "NoticeQuerySet",
    "ProberEscalation",
    "ProberEscalationQuerySet",
    "QuarantineStorage",
    "RefusedUpload",
    "RefusedUploadQuerySet",
    "REPORT_MAX_CHARS",
    "Report",
    "ReportFiling",
    "ReportQuerySet",
    "ReindexRun",
    "ReviewItem",
    "ReviewItemQuerySet",
    "ReviewSubscription",
    "ShadowHit",
    "SignalChange",
    "SignalEntry",
    "SignalEntryQuerySet",
    "SignalImport",
    "SignalImportRow",
    "SignalType",
    "StoredHash",
    "StoredHashTarget",
    "StoredSignal",
    "Sweep",
    "WorkRange",
    "WorkerHeartbeat",
    "default_hash_list_id",
    "quarantine_storage",
]
