"""The moderation settings, each declared once: name, default, kind (range) and meaning.

App code reads them through ``moderation_settings``, never ``django.conf.settings`` directly::

    from moderation.conf import moderation_settings

    moderation_settings.MAX_DISTANCE  # settings.MODERATION_MAX_DISTANCE, or its default

Each access reads ``django.conf.settings`` again (so ``override_settings`` and pytest-django's
``settings`` fixture work) and falls back to the declared default when the project did not set
the setting, so the app also runs under a settings module other than ``config/settings.py``.
``config/settings.py`` reads each setting from the environment variable of the same name with
the default declared here; ``moderation/checks.py`` checks each against its kind.

Only ``django.conf`` is imported: settings, checks and every app module can import this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

PREFIX = "MODERATION_"


class Kind(Enum):
    """What values a setting takes; ``moderation/checks.py`` refuses the others at start-up."""

    BITS = "an integer from 0 to 64: bits of a 64-bit hash"  # moderation.E001
    POSITIVE = "an integer, 1 or more"  # moderation.E002
    OFF_OR_MORE = "an integer, 0 or more; 0 turns it off"  # moderation.E005
    PERCENT = "an integer from 0 to 100: a percentage"  # moderation.E007
    INT = "an integer (not checked)"
    STR = "a string (not checked)"


@dataclass(frozen=True)
class Setting:
    name: str  # the Django setting, and the environment variable config/settings.py reads
    default: int | str
    kind: Kind
    description: str

    def value(self) -> Any:
        """The setting now: ``django.conf.settings``' value, or the default if it has none."""
        return getattr(django_settings, self.name, self.default)


# Declaration order is the order checks.py reports errors in.
DECLARATIONS = (
    # --- Uploads ---------------------------------------------------------------------------
    Setting(
        "MODERATION_MAX_UPLOAD_BYTES",
        15 * 1024 * 1024,
        Kind.POSITIVE,
        "Uploads larger than this are refused before the image is decoded (bytes).",
    ),
    # The photo limit plus room for the rest of the form (config/middleware.py).
    Setting(
        "MODERATION_MAX_REQUEST_BYTES",
        16 * 1024 * 1024,
        Kind.INT,
        "A request body larger than this is answered 413 before Django reads it (bytes).",
    ),
    Setting(
        "MODERATION_MAX_PIXELS",
        50_000_000,
        Kind.POSITIVE,
        "Decoded pixels (width * height) an upload may declare; larger is refused before decoding.",
    ),
    Setting(
        "MODERATION_MIN_SIDE",
        32,
        Kind.POSITIVE,
        "Smallest accepted side in pixels: a dHash of a tiny image says nothing about it.",
    ),
    # A banned picture can hide as any frame of an animation (GIF, APNG, WebP), so every frame
    # is compared with the banned set. More frames than this (or than fit in
    # MODERATION_MAX_PIXELS all together) and the upload is refused; only the first frame is
    # stored, as a still JPEG.
    Setting(
        "MODERATION_MAX_FRAMES",
        50,
        Kind.POSITIVE,
        "Frames of an animation compared with the banned set; more and the upload is refused.",
    ),
    # Cameras write a few KB to a few hundred; a file that is mostly something else is refused.
    # Never stored.
    Setting(
        "MODERATION_MAX_METADATA_BYTES",
        2 * 1024 * 1024,
        Kind.POSITIVE,
        "Metadata (EXIF, XMP, ICC, comments, PNG text) an upload may carry (bytes).",
    ),
    # --- The match rule and the review queue -----------------------------------------------
    # The match rule (moderation/matching.py), all Hamming distances in bits out of 64, `<=`. An
    # upload is refused when a banned fingerprint (any variant of a flagged image: its 8
    # orientations and a few crops, moderation/variants.py) is within MODERATION_MAX_DISTANCE
    # dHash bits AND within MODERATION_MAX_CONFIRM_DISTANCE pHash bits. A banned row without a
    # pHash (pipeline < 3, original not kept) can't be confirmed and blocks within
    # MODERATION_MAX_UNCONFIRMED_DISTANCE dHash bits alone, as before pHash existed.
    # Defaults from `manage.py evaluate_matching` on the corpus (docs/matching.md, "What it
    # catches").
    Setting(
        "MODERATION_MAX_DISTANCE",
        12,
        Kind.BITS,
        "dHash bits (<=) within which a banned fingerprint is a candidate match.",
    ),
    Setting(
        "MODERATION_MAX_CONFIRM_DISTANCE",
        16,
        Kind.BITS,
        "pHash bits (<=) within which a candidate's pHash confirms the match.",
    ),
    Setting(
        "MODERATION_MAX_UNCONFIRMED_DISTANCE",
        6,
        Kind.BITS,
        "dHash bits (<=) within which a banned row without a pHash blocks on its own.",
    ),
    # Flagging refuses (superusers may override) an image whose fingerprint has fewer
    # informative dHash bits than this (0-64, see moderation/hashing.py); near-flat images
    # collide with each other, and a match with a low-information flag never blocks an upload
    # on its own.
    Setting(
        "MODERATION_MIN_INFORMATION",
        20,
        Kind.BITS,
        "Informative dHash bits an image needs to be flagged without a superuser override.",
    ),
    # The review queue: an upload that is not blocked but whose dHash is within
    # MODERATION_REVIEW_DISTANCE bits (<=) of an enforced banned fingerprint (a near miss, or a
    # candidate the pHash confirmation rejected) is accepted and queued for a moderator. Also
    # the largest distance a hash list may set (every lookup reaches this far). 0 turns the
    # queue off for near misses (and limits list distances to MODERATION_MAX_DISTANCE).
    Setting(
        "MODERATION_REVIEW_DISTANCE",
        16,
        Kind.BITS,
        "dHash bits (<=) within which an accepted upload is queued for review.",
    ),
    # ...and whose pHash is within this many bits (<=) of it when its dHash is within the match
    # distance; a near miss beyond the match distance needs the match's own pHash distance (see
    # MatchRule.reviews: over on both hashes is a stranger). Among a million banned
    # fingerprints almost any photo has *some* dHash within 16 bits; the pHash is what tells a
    # near copy. A flag without a pHash queues only within MODERATION_MAX_DISTANCE dHash bits.
    Setting(
        "MODERATION_REVIEW_CONFIRM_DISTANCE",
        18,
        Kind.BITS,
        "pHash bits (<=) a near miss within the match distance needs to be queued for review.",
    ),
    # Dismissing a queued upload allows that image for that fingerprint: a later upload within
    # MODERATION_ALLOWLIST_DISTANCE dHash bits of it (the same picture re-encoded) is not
    # refused or queued for it again.
    Setting(
        "MODERATION_ALLOWLIST_DISTANCE",
        2,
        Kind.BITS,
        "dHash bits (<=) within which an upload is the same image as a dismissed one.",
    ),
    # --- Abuse: upload rate limits ---------------------------------------------------------
    # Photo uploads (accepted or refused) per user and per client IP in each window (fixed
    # windows of MODERATION_UPLOAD_RATE_WINDOW seconds); over the limit the upload is answered
    # 429 with a friendly page and nothing is decoded. 0 turns a limit off.
    Setting(
        "MODERATION_UPLOAD_RATE_WINDOW",
        3600,
        Kind.POSITIVE,
        "Length of an upload rate-limit window (seconds).",
    ),
    Setting(
        "MODERATION_UPLOAD_RATE_PER_USER",
        20,
        Kind.OFF_OR_MORE,
        "Photo uploads a signed-in user may make per window.",
    ),
    Setting(
        "MODERATION_UPLOAD_RATE_PER_IP",
        60,
        Kind.OFF_OR_MORE,
        "Photo uploads a client IP may make per window.",
    ),
    # How many reverse proxies in front of the site append to X-Forwarded-For; the client IP is
    # the entry that many from the right. 0 (the default): REMOTE_ADDR, no header is trusted.
    Setting(
        "MODERATION_TRUSTED_PROXY_COUNT",
        0,
        Kind.OFF_OR_MORE,
        "Reverse proxies that append to X-Forwarded-For; 0 trusts no header (REMOTE_ADDR).",
    ),
    # --- Review-queue upkeep ---------------------------------------------------------------
    # A fingerprint dismissed more than MODERATION_MAX_DISMISSALS times is suspended
    # automatically (deactivated, audited, shown to moderators); 0 never suspends.
    Setting(
        "MODERATION_MAX_DISMISSALS",
        5,
        Kind.OFF_OR_MORE,
        "Dismissed matches after which a fingerprint is suspended; 0 never suspends.",
    ),
    # --- Each flag's record (moderation/precision.py) ----------------------------------------
    # A flag's precision is the share of its judged decisions (appeals decided, queued near
    # misses banned or dismissed) that were right. Below MODERATION_PRECISION_POOR_BELOW percent,
    # over at least MODERATION_PRECISION_MIN_JUDGED judged decisions, it is "poor" and listed for
    # re-review on the dashboard; with fewer judged decisions it is "not enough data". With the
    # defaults one wrong decision in five is not enough to call a flag poor, two are.
    Setting(
        "MODERATION_PRECISION_POOR_BELOW",
        80,
        Kind.PERCENT,
        "Precision (percent) below which a flag is poor and listed for re-review; 0 lists none.",
    ),
    Setting(
        "MODERATION_PRECISION_MIN_JUDGED",
        5,
        Kind.POSITIVE,
        "Judged decisions a flag needs before its precision is rated (fewer: not enough data).",
    ),
    # --- Floods: a flag that matches too many people's photos --------------------------------
    # A flag whose takedowns (sweeps, rechecks) and refused uploads reach more than
    # MODERATION_FLOOD_MAX_USERS distinct users' photos within MODERATION_FLOOD_WINDOW_MINUTES
    # is held in shadow before it takes down another (moderation/flood_guard.py): a default
    # avatar or a meme template flagged by mistake stops at that many. A moderator resumes it
    # (the held takedowns run; the guard no longer applies to it) or drops it. 0: no guard.
    Setting(
        "MODERATION_FLOOD_MAX_USERS",
        25,
        Kind.OFF_OR_MORE,
        "Distinct users' photos a flag may take down or refuse in the window before it is held.",
    ),
    Setting(
        "MODERATION_FLOOD_WINDOW_MINUTES",
        60,
        Kind.POSITIVE,
        "The flood guard's window (minutes).",
    ),
    # --- Probers: uploads that keep landing near banned images -----------------------------
    # An account with MODERATION_PROBER_ATTEMPTS refused uploads or queued near misses within
    # MODERATION_PROBER_WINDOW_MINUTES (or a client IP with that many refusals, from more than
    # one account) is escalated (moderation/probing.py): its
    # attempts go in a queue side by side and its accepted uploads are held for review. The
    # user sees the same generic message as anyone. 0 never escalates.
    Setting(
        "MODERATION_PROBER_ATTEMPTS",
        5,
        Kind.OFF_OR_MORE,
        "Refusals or near misses within the window after which an uploader is escalated.",
    ),
    Setting(
        "MODERATION_PROBER_WINDOW_MINUTES",
        24 * 60,
        Kind.POSITIVE,
        "The prober window (minutes).",
    ),
    # Review-queue emails: at most one per subscribed moderator every this many minutes, each
    # summarising the queue (how many wait, the oldest's age, a link). An hour keeps a busy day
    # to a handful of mails while nothing waits unseen for long; 0 mails on every queued upload.
    Setting(
        "MODERATION_REVIEW_NOTIFY_MINUTES",
        60,
        Kind.OFF_OR_MORE,
        "Minutes between review-queue emails to a moderator; 0 mails on every queued upload.",
    ),
    # --- Notices and appeals (moderation/notices.py, moderation/appeals.py) -----------------
    # A taken-down photo is kept in private storage this many days after its takedown, so an
    # appeal the moderators overturn can put it back; then `purge_kept_takedowns_task` deletes
    # it (never while an appeal of it is open, never a flag's own original). The EU Digital
    # Services Act lets people complain for at least six months after a decision.
    Setting(
        "MODERATION_TAKEDOWN_KEEP_DAYS",
        183,
        Kind.POSITIVE,
        "Days a taken-down photo is kept privately for an appeal before it is purged.",
    ),
    # Unflagging "with the photos put back" screens and stores each kept photo again: up to
    # this many are put back in the moderator's request; more are handed to the task worker
    # (``flagging.restore_takedowns_task``) and the moderator is told they will be put back in
    # the background. 0 puts every restore in the background.
    Setting(
        "MODERATION_RESTORE_INLINE_MAX",
        50,
        Kind.OFF_OR_MORE,
        "Kept photos an unflag puts back in the request; more are put back by the task worker.",
    ),
    # Appeals a signed-in person may file per window (fixed windows, as for uploads); over the
    # limit the form is answered 429 and nothing is written. 0 turns the limit off.
    Setting(
        "MODERATION_APPEAL_RATE_WINDOW",
        86400,
        Kind.POSITIVE,
        "Length of an appeal rate-limit window (seconds).",
    ),
    Setting(
        "MODERATION_APPEAL_RATE_PER_USER",
        5,
        Kind.OFF_OR_MORE,
        "Appeals a signed-in person may file per window.",
    ),
    # Photo reports a signed-in person may file per window; over the limit the report is
    # answered 429 and nothing is written. 0 turns the limit off.
    Setting(
        "MODERATION_REPORT_RATE_WINDOW",
        3600,
        Kind.POSITIVE,
        "Length of a photo-report rate-limit window (seconds).",
    ),
    Setting(
        "MODERATION_REPORT_RATE_PER_USER",
        10,
        Kind.OFF_OR_MORE,
        "Photo reports a signed-in person may file per window.",
    ),
    # Confirmation emails for a new address (profile page, staff "My account") a signed-in
    # person, and a client IP, may ask for per window; over the limit the form answers 429,
    # nothing is sent or written. Sign-ups are limited per IP at the login limits instead.
    # 0 turns a limit off.
    Setting(
        "MODERATION_EMAIL_RATE_WINDOW",
        3600,
        Kind.POSITIVE,
        "Length of an email-change rate-limit window (seconds).",
    ),
    Setting(
        "MODERATION_EMAIL_RATE_PER_USER",
        5,
        Kind.OFF_OR_MORE,
        "Confirmation emails for a new address a signed-in person may ask for per window.",
    ),
    Setting(
        "MODERATION_EMAIL_RATE_PER_IP",
        20,
        Kind.OFF_OR_MORE,
        "Confirmation emails for a new address a client IP may ask for per window.",
    ),
    # --- Reindex and full sweeps ------------------------------------------------------------
    # A reindex (and the full sweep after it) is split into ranges of at most this many stored
    # images, one task each, so any number of workers share it; a range's progress is committed
    # batch by batch, so a killed worker loses at most one batch. Smaller ranges spread better
    # over many workers; larger ones mean fewer rows in the queue.
    Setting(
        "MODERATION_REINDEX_RANGE_SIZE",
        5000,
        Kind.POSITIVE,
        "Stored images per reindex or full-sweep range (one task each).",
    ),
    Setting(
        "MODERATION_SITE_URL",
        "http://127.0.0.1:8000",
        Kind.STR,
        "Scheme and host of the links in review-queue emails (production: the public origin).",
    ),
    # --- The banned set's snapshot (moderation/banned_snapshot.py) --------------------------
    # Every process of a host maps the banned set's snapshot (and the PDQ entries', in pdq/)
    # from this local folder instead of loading its own copy from the database;
    # `manage.py banned_snapshot` writes both at deploy.
    # Empty: no snapshot, each process loads the whole set from the database.
    Setting(
        "MODERATION_SNAPSHOT_DIR",
        str(Path(__file__).resolve().parent.parent / "var" / "banned-set"),
        Kind.STR,
        "Local folder of the banned set's (and PDQ entries') snapshots, shared by a host's "
        "processes; empty: none.",
    ),
    # A process keeps the entries changed since its snapshot privately (~250 B each); past this
    # many it maps a newer snapshot, writing one if no process on the host is doing so.
    Setting(
        "MODERATION_SNAPSHOT_DELTA_LIMIT",
        50_000,
        Kind.POSITIVE,
        "Entries changed since the mapped snapshot after which a process moves to a newer one.",
    ),
)

# --- Background tasks (manage.py run_worker, moderation/worker.py) ----------------------
# Each worker writes a heartbeat every MODERATION_WORKER_HEARTBEAT_SECONDS; a task whose
# worker has not been seen for MODERATION_WORKER_LEASE_SECONDS is given back to the queue and
# run again by another worker (tasks are idempotent). The lease must outlast a few missed
# heartbeats (a busy database, a GC pause): a lease shorter than two heartbeats is refused.
# A task that raises is tried again after MODERATION_TASK_RETRY_SECONDS, doubling each time,
# until MODERATION_TASK_MAX_ATTEMPTS claims were made; then it stays failed, with its error,
# on the admin's "failed background tasks" page and on the dashboard.
DECLARATIONS += (
    Setting(
        "MODERATION_WORKER_HEARTBEAT_SECONDS",
        5,
        Kind.POSITIVE,
        "Seconds between a task worker's heartbeats.",
    ),
    Setting(
        "MODERATION_WORKER_LEASE_SECONDS",
        30,
        Kind.POSITIVE,
        "Seconds without a heartbeat after which a worker's running task is run again elsewhere.",
    ),
    Setting(
        "MODERATION_TASK_MAX_ATTEMPTS",
        5,
        Kind.POSITIVE,
        "Claims of a task (first run included) before it stays failed.",
    ),
    Setting(
        "MODERATION_TASK_RETRY_SECONDS",
        10,
        Kind.OFF_OR_MORE,
        "Wait before a failed task's second attempt; doubled for each further one (max 1 h).",
    ),
)

SETTINGS: dict[str, Setting] = {setting.name: setting for setting in DECLARATIONS}
DEFAULTS: dict[str, int | str] = {setting.name: setting.default for setting in DECLARATIONS}


class ModerationSettings:
    """``moderation_settings.MAX_DISTANCE``: ``settings.MODERATION_MAX_DISTANCE`` or its default.

    Read-only, and read at each access: tests change settings with ``override_settings`` (or
    pytest-django's ``settings``), never here. A name that is not declared above is an
    ``AttributeError``, as a misspelt ``settings.MODERATION_...`` was.
    """

    __slots__ = ()

    def __getattr__(self, attr: str) -> Any:
        try:
            setting = SETTINGS[PREFIX + attr]
        except KeyError:
            raise AttributeError(
                f"{attr!r} is not a moderation setting (see moderation/conf.py)"
            ) from None
        return setting.value()

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError("moderation settings are read-only: use override_settings")

    def __dir__(self) -> list[str]:
        return [name.removeprefix(PREFIX) for name in SETTINGS]


moderation_settings = ModerationSettings()
