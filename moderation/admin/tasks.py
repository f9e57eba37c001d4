"""Background tasks that failed for good, with a retry button; the task workers' heartbeats.

A task is retried by the worker a few times with backoff (``moderation/worker.py``); when every
attempt failed it stays here with its error until someone with ``moderation.retry_task``
queues it again (a POST, audited). The dashboard and ``/ready`` count these rows.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from moderation import worker
from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin
from moderation.models import FailedTask, WorkerHeartbeat

RETRY_PERMISSION = "moderation.retry_task"


@admin.register(FailedTask)
class FailedTaskAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["task_name", "error", "attempts", "finished_at", "enqueued_at"]
    list_filter = ["finished_at"]
    ordering = ["-finished_at"]
    fields = [
        "task_name",
        "args_kwargs",
        "attempts",
        "worker_ids",
        "enqueued_at",
        "started_at",
        "finished_at",
        "exception_class_path",
        "formatted_traceback",
    ]
    readonly_fields = fields

    def get_urls(self):
        return [
            path(
                "<path:object_id>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="moderation_failedtask_retry",
            )
        ] + super().get_urls()

    @admin.display(description=_("error"))
    def error(self, obj: FailedTask) -> str:
        last = obj.traceback.strip().splitlines()[-1:] or [obj.exception_class_path]
        return last[0][:200]

    @admin.display(description=_("attempts"))
    def attempts(self, obj: FailedTask) -> int:
        return len(obj.worker_ids)

    @admin.display(description=_("traceback"))
    def formatted_traceback(self, obj: FailedTask) -> str:
        return format_html("<pre>{}</pre>", obj.traceback or "-")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_retry": request.user.has_perm(RETRY_PERMISSION),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def retry_view(self, request, object_id):
        """POST: queue the failed task again (fresh attempts), audited."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(RETRY_PERMISSION):
            raise PermissionDenied
        row = worker.retry_failed(object_id, actor=request.user)
        if row is None:
            self.message_user(
                request, _("That task is not failed (any more): nothing queued."), messages.WARNING
            )
        else:
            self.message_user(
                request, _("Queued again: a worker will run it shortly."), messages.SUCCESS
            )
        return redirect("admin:moderation_failedtask_changelist")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each ``run_worker`` process, the task it runs, and whether its lease is current."""

    list_display = ["worker_id", "host", "pid", "started_at", "last_seen", "current_task", "alive"]

    @admin.display(boolean=True, description=_("alive"))
    def alive(self, obj: WorkerHeartbeat) -> bool:
        return obj.last_seen >= worker.lease_cutoff()
