"""Staff-facing moderation: one module per administered area, imported here so that Django's
autodiscovery of ``moderation.admin`` registers every ModelAdmin.

- ``flags``: the banned set and the "Flag an image" page;
- ``lists``: hash lists, distance trials and shadow hits;
- ``review_queue``: the review queue, the dashboard and queue emails;
- ``allowlist``: dismissed matches and their revocation;
- ``records``: the audit trail and refused uploads;
- ``tasks``: background tasks that failed for good, and their retry;
- ``operations``: sweeps' state and reindex runs' progress;
- ``accounts``: staff accounts' two-factor reset;
- ``base``: what they share.
"""

from moderation.admin import (
    accounts,
    allowlist,
    flags,
    lists,
    operations,
    records,
    review_queue,
    tasks,
)

__all__ = [
    "accounts",
    "allowlist",
    "flags",
    "lists",
    "operations",
    "records",
    "review_queue",
    "tasks",
]
