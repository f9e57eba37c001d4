"""The numbers on the staff dashboard: reads only (QuerySet aggregates), no writes."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.db.models.functions import TruncDate
from django.utils import timezone

from moderation import flood_guard, precision, worker
from moderation.conf import moderation_settings
from moderation.models import (
    Appeal,
    AuditEvent,
    FlaggedFingerprint,
    ProberEscalation,
    RefusedUpload,
    ReindexRun,
    Report,
    ReviewItem,
    Sweep,
)
from moderation.work_ranges import progress

# Who sees the dashboard: staff who may read refused uploads (most of it is about them).
PERMISSION = "moderation.view_refusedupload"

DAYS = 30
TOP = 10
# A user with at least this many refused uploads is listed: one refusal is an accident, a run
# of them is someone editing a banned picture until it passes.
REPEATED = 2
CHART_HEIGHT = 100  # px of the tallest bar


def can_see(user) -> bool:
    return user.is_active and user.is_staff and user.has_perm(PERMISSION)


def refusals_per_day(days: int = DAYS) -> list[dict]:
    """``[{"day", "count", "x", "y", "height"}]`` for the last ``days`` days, oldest first,
    days without refusals kept (as zero-height bars)."""
    today = timezone.localdate()
    start = today - timedelta(days=days - 1)
    counts = dict(
        RefusedUpload.objects.filter(created_at__date__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values_list("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    top = max(counts.values(), default=0) or 1
    bars = []
    for i in range(days):
        day = start + timedelta(days=i)
        height = round(CHART_HEIGHT * counts.get(day, 0) / top)
        bars.append(
            # x, y, height: the day's bar in the inline SVG chart (baseline at CHART_HEIGHT)
            {
                "day": day,
                "count": counts.get(day, 0),
                "x": i * 20,
                "y": CHART_HEIGHT - height,
                "height": height,
            }
        )
    return bars


def running_reindex() -> dict | None:
    """The open reindex run and how far it is (the ``reindex --status`` lines), or None."""
    run = ReindexRun.objects.filter(finished_at__isnull=True).order_by("-started_at").first()
    if run is None:
        return None
    sweep = run.sweeps.filter(full=True).order_by("-pk").first()
    return {
        "run": run,
        "reindex": progress(run.ranges.all()).line(),
        "sweep": progress(sweep.ranges.all()).line() if sweep is not None else None,
    }


def summary() -> dict:
    pending = ReviewItem.objects.pending()
    oldest = pending.aggregate(oldest=Min("created_at"))["oldest"]
    per_day = refusals_per_day()
    background = worker.health()
    return {
        # Background work: tasks that failed for good (each with a retry button in the
        # admin) and workers that stopped sending heartbeats; both 0 when all is well.
        "failed_tasks": background.failed_tasks,
        "workers_alive": background.workers_alive,
        "workers_stale": background.workers_stale,
        "per_day": per_day,
        "refused_total": sum(d["count"] for d in per_day),
        "queue_size": pending.count(),
        # What people are waiting on a moderator for, besides the queue.
        "appeals_open": Appeal.objects.open().count(),
        "reports_open": Report.objects.open().count(),
        "queue_oldest": oldest,
        "queue_age": timezone.now() - oldest if oldest else None,
        "reindex": running_reindex(),
        "failed_sweeps": Sweep.objects.filter(state=Sweep.State.FAILED).count(),
        # Flags the flood guard switched to shadow, waiting for a moderator to resume or drop.
        "held_flags": list(
            FlaggedFingerprint.objects.held_by_flood_guard()
            .annotate(
                taken_down=Count(
                    "audit_events", filter=Q(audit_events__action=AuditEvent.Action.TAKEDOWN)
                )
            )
            .select_related("hash_list")
            .order_by("flood_held_at")
        ),
        # Lists the flood guard switched to shadow, waiting for a moderator likewise.
        "held_lists": list(flood_guard.held_lists()),
        # Active flags whose precision is poor, not re-reviewed since their last judged
        # decision (``precision.to_rereview``), worst first.
        "rereview_flags": [
            (flagged, precision.Record.of(flagged))
            for flagged in precision.to_rereview(FlaggedFingerprint.objects.all()).select_related(
                "hash_list"
            )[:TOP]
        ],
        "rereview_count": precision.to_rereview(FlaggedFingerprint.objects.all()).count(),
        "precision_poor_below": moderation_settings.PRECISION_POOR_BELOW,
        "precision_min_judged": moderation_settings.PRECISION_MIN_JUDGED,
        # Uploaders escalated as probers, still open.
        "escalations": list(
            ProberEscalation.objects.open().select_related("user", "fingerprint")[:TOP]
        ),
        "escalations_open": ProberEscalation.objects.open().count(),
        "top_fingerprints": (
            FlaggedFingerprint.objects.annotate(
                refusals=Subquery(
                    RefusedUpload.objects.filter(nearest=OuterRef("pk"))
                    .order_by()
                    .values("nearest")
                    .annotate(n=Count("pk"))
                    .values("n")
                ),
                reviews=Count("review_items", distinct=True),
            )
            .filter(refusals__gt=0)
            .order_by("-refusals", "-reviews", "pk")
            .select_related("hash_list")[:TOP]
        ),
        "repeat_users": (
            RefusedUpload.objects.filter(user__isnull=False)
            .values("user__id", "user__username")
            .annotate(n=Count("pk"))
            .filter(n__gte=REPEATED)
            .order_by("-n", "user__username")[:20]
        ),
    }
