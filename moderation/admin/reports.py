"""Reported photos in the admin: open reports first, each with the photo, every person's reason
and words, and one-step "Ban it" or "Dismiss" with a reason. Decisions go through ``reports``;
they need the review queue's permissions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from moderation import registry, reports
from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin
from moderation.admin.filters import DefaultStatusFilter
from moderation.models import Report


def reported_image(report: Report):
    """The reported file, or None when it was replaced or removed since."""
    try:
        target = registry.target_by_key(report.target_key)
    except KeyError:
        return None
    instance = target.objects.filter(pk=report.object_id).first()
    image = target.image(instance) if instance is not None else None
    return image if image and image.name == report.file_name else None


class ReportStatusFilter(DefaultStatusFilter):
    """Open reports by default: they are the queue."""

    statuses = Report.Status
    default = Report.Status.OPEN


@admin.register(Report)
class ReportAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Photos people reported, oldest first, one row per photo however many reported it."""

    list_display = ["__str__", "uploader", "reporters", "status", "created_at", "decided_at"]
    list_filter = [ReportStatusFilter, "created_at"]
    list_select_related = ["uploader"]
    search_fields = ["target", "uploader__username"]
    change_form_template = "admin/moderation/report/decide.html"

    @admin.display(description=_("reporters"))
    def reporters(self, obj: Report) -> int:
        return obj.filings.count()

    def has_decide_permission(self, request) -> bool:
        return request.user.has_perm("moderation.review_upload") and request.user.has_perm(
            "moderation.flag_image"
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        report = self.get_object(request, object_id)
        if report is None:
            raise Http404(_("No such report."))
        if not self.has_view_permission(request, report):
            raise PermissionDenied
        if request.method == "POST":
            return self._decide(request, report)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Decide a reported photo"),
            "opts": self.model._meta,
            "report": report,
            "image": reported_image(report),
            "filings": report.filings.select_related("reporter"),
            "can_decide": self.has_decide_permission(request)
            and report.status == Report.Status.OPEN,
        }
        return TemplateResponse(request, self.change_form_template, context)

    def _decide(self, request, report: Report):
        if not self.has_decide_permission(request):
            raise PermissionDenied
        decision = request.POST.get("decision")
        decide = {"ban": reports.report_ban, "dismiss": reports.report_dismiss}.get(decision)
        if decide is None:
            return HttpResponse(status=400)
        try:
            done = decide(report=report, actor=request.user, reason=request.POST.get("reason", ""))
        except ValidationError as e:
            self.message_user(request, " ".join(e.messages), messages.ERROR)
            return redirect(request.path)
        if decision == "ban" and done:
            self.message_user(
                request, _("Banned; the photo was taken down and copies swept."), messages.SUCCESS
            )
        elif decision == "dismiss" and done:
            self.message_user(request, _("Dismissed; the photo stays."), messages.SUCCESS)
        else:
            self.message_user(
                request,
                _("Nothing banned: the report was already decided or the photo is gone."),
                messages.WARNING,
            )
        return redirect("admin:moderation_report_changelist")
