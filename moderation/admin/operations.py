"""Background work as the desk and the operator see it: each sweep's state (on its flags' pages
and list, and after a flag) and the reindex runs with their progress, read-only.

Shown as it stands in the database (``Sweep``, ``ReindexRun``, ``WorkRange``), never as a
promise: "queued" until a worker starts it, "failed" with its error when it raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import list_sweep, reindex
from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin
from moderation.background import enqueue_on_commit
from moderation.models import ReindexRun, Sweep, WorkRange
from moderation.sweeping import sweep_task
from moderation.work_ranges import progress


def latest_sweep(flagged) -> Sweep | None:
    """The flag's latest sweep (from ``prefetch_related("sweeps")`` when the list did that)."""
    sweeps = list(flagged.sweeps.all())
    return max(sweeps, key=lambda s: (s.created_at, s.pk)) if sweeps else None


def describe_sweep(sweep: Sweep | None) -> str:
    """One line: queued / running / done with counts / failed with its error, and whether it
    was retried after a failure."""
    if sweep is None:
        return "—"
    retried = sweep.attempts > 1 or (sweep.last_error and sweep.state != Sweep.State.FAILED)
    retry = (
        f" (retried after a failure: {sweep.last_error})" if retried and sweep.last_error else ""
    )
    if sweep.state == Sweep.State.QUEUED:
        return str(_("queued"))
    if sweep.state == Sweep.State.RUNNING:
        return str(_("running, attempt %(n)d") % {"n": sweep.attempts}) + retry
    if sweep.state == Sweep.State.FAILED:
        return str(
            _("failed after %(n)d attempt(s): %(error)s")
            % {"n": sweep.attempts, "error": sweep.last_error}
        )
    return (
        str(
            _("done: checked %(checked)d, took down %(down)d, queued %(queued)d for review")
            % {"checked": sweep.checked, "down": sweep.taken_down, "queued": sweep.queued}
        )
        + retry
    )


def sweeps_summary(fingerprint_ids: Iterable[int]) -> str:
    """After flagging: the state of each new flag's sweep, counted ("2 queued", "1 done (1
    taken down)"); what a worker has not started yet says queued, not "being taken down"."""
    latest: dict[int, Sweep] = {}
    rows = Sweep.fingerprints.through.objects.filter(
        flaggedfingerprint_id__in=list(fingerprint_ids)
    ).select_related("sweep")
    for row in rows:
        current = latest.get(row.flaggedfingerprint_id)
        if current is None or (row.sweep.created_at, row.sweep.pk) > (
            current.created_at,
            current.pk,
        ):
            latest[row.flaggedfingerprint_id] = row.sweep
    if not latest:
        return str(_("no sweep recorded"))
    states = Counter(s.state for s in latest.values())
    parts = []
    for state in Sweep.State:
        if states[state]:
            label = f"{states[state]} {state.label}"
            if state == Sweep.State.DONE:
                down = sum(s.taken_down for s in latest.values() if s.state == state)
                label += str(_(" (%(down)d taken down)") % {"down": down})
            parts.append(label)
    return ", ".join(parts)


@admin.register(Sweep)
class SweepAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every sweep, newest first: after a flag, full (after a reindex), or of a hash list's new
    entries (``list_sweep``); a failed one can be run again (a retry is harmless: see
    ``sweeping.run_sweep``)."""

    actions = ["run_again"]

    def has_flag_permission(self, request) -> bool:
        return request.user.has_perm("moderation.flag_image")

    @admin.action(description=_("Run the selected unfinished sweeps again"), permissions=["flag"])
    def run_again(self, request, queryset):
        count = 0
        for sweep in queryset.exclude(state=Sweep.State.DONE):
            if sweep.run_id is not None:
                reindex.enqueue_ranges(sweep.run)  # its unfinished ranges
            elif sweep.hash_list_id is not None:
                enqueue_on_commit(list_sweep.plan_list_sweep_task, sweep.pk)  # its open ranges
            else:
                enqueue_on_commit(sweep_task, sweep_id=sweep.pk)
            count += 1
        self.message_user(
            request,
            ngettext("%d sweep enqueued again.", "%d sweeps enqueued again.", count) % count,
            messages.SUCCESS,
        )

    list_display = ["__str__", "full", "hash_list", "state_line", "created_at", "finished_at"]
    list_filter = ["state", "full", "created_at"]
    fields = [
        "full",
        "run",
        "hash_list",
        "signal_import",
        "guarded",
        "state",
        "state_line",
        "flags",
        "checked",
        "taken_down",
        "queued",
        "attempts",
        "last_error",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    @admin.display(description=_("state"))
    def state_line(self, obj: Sweep) -> str:
        """A full sweep in progress also says how far it is (ranges, rows, rate, time left),
        as the reindex runs do."""
        ranged = obj.full or obj.hash_list_id is not None
        if ranged and obj.state != Sweep.State.DONE and obj.ranges.exists():
            return f"{progress(obj.ranges.all()).line()}; {describe_sweep(obj)}"
        return describe_sweep(obj)

    @admin.display(description=_("flags"))
    def flags(self, obj: Sweep) -> str:
        return ", ".join(f.hex for f in obj.fingerprints.all()) or "—"


@admin.register(ReindexRun)
class ReindexRunAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Reindex runs and how far each is: ranges and rows done, rate and time left (the same
    as ``manage.py reindex --status``)."""

    list_display = ["__str__", "phase", "reindex_progress", "sweep_progress", "finished_at"]
    list_filter = ["phase"]
    fields = [
        "started_at",
        "finished_at",
        "pipeline_version",
        "phase",
        "sweep_after",
        "batch_size",
        "reindex_progress",
        "sweep_progress",
        "failed_ranges",
        "counts",
    ]
    readonly_fields = fields

    @admin.display(description=_("re-fingerprinting"))
    def reindex_progress(self, obj: ReindexRun) -> str:
        return progress(obj.ranges.all()).line()

    @admin.display(description=_("full sweep"))
    def sweep_progress(self, obj: ReindexRun) -> str:
        sweep = obj.sweeps.filter(full=True).order_by("-pk").first()
        if sweep is None:
            return "—" if obj.sweep_after else str(_("not swept"))
        return f"{progress(sweep.ranges.all()).line()}; {describe_sweep(sweep)}"

    @admin.display(description=_("ranges that failed"))
    def failed_ranges(self, obj: ReindexRun) -> str:
        failed = WorkRange.objects.filter(done=False).exclude(last_error="")
        failed = failed.filter(run=obj) | failed.filter(sweep__run=obj)
        rows = list(failed.order_by("pk")[:20])
        if not rows:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} (attempt {}): {}</li>",
                ((str(r), r.attempts, r.last_error) for r in rows),
            ),
        )
