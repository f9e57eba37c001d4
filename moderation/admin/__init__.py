"""Staff-facing moderation: one module per administered area, imported here so that Django's
autodiscovery of ``moderation.admin`` registers every ModelAdmin.

- ``flags``: the banned set and the "Flag an image" page;
- ``lists``: hash lists, distance trials and shadow hits;
- ``entries``: the lists' PDQ, MD5 and SHA-256 entries and their imports;
- ``review_queue``: the review queue, the dashboard and queue emails;
- ``appeals``: appeals against takedowns and refusals, and their decision;
- ``reports``: photos people reported, banned or dismissed in one step;
- ``allowlist``: dismissed matches and their revocation;
- ``probers``: uploaders escalated for probing, their attempts side by side;
- ``records``: the audit trail and refused uploads;
- ``tasks``: background tasks that failed for good, and their retry;
- ``operations``: sweeps' state and reindex runs' progress;
- ``api_tokens``: the lookup API's tokens, issued and revoked;
- ``accounts``: staff accounts' two-factor reset;
- ``base``: what they share.
"""

from moderation.admin import (
    accounts,
    allowlist,
    api_tokens,
    appeals,
    entries,
    flags,
    lists,
    operations,
    probers,
    records,
    reports,
    review_queue,
    tasks,
)

__all__ = [
    "accounts",
    "allowlist",
    "api_tokens",
    "appeals",
    "entries",
    "flags",
    "lists",
    "operations",
    "probers",
    "records",
    "reports",
    "review_queue",
    "tasks",
]
