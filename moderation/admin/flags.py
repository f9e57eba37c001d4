"""The banned set in the admin: the flags' list and pages, unflagging and export, and the
"Flag an image" page. The banned set changes only through the flows (``flagging``).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F, Q
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import desk, exchange, flagging, precision
from moderation.admin.base import (
    PlainRelationsMixin,
    ReadOnlyAdminMixin,
    confirm_with_reason,
    precision_cell,
    quarantine_link,
)
from moderation.admin.operations import describe_sweep, latest_sweep, sweeps_summary
from moderation.conf import moderation_settings
from moderation.files import StorageUnavailable
from moderation.hashing import Fingerprint
from moderation.models import FingerprintVariant, FlaggedFingerprint


class FlagImageForm(forms.Form):
    image = forms.FileField(label=_("Image"), help_text=_("JPEG, PNG, GIF or WebP."))
    reason = forms.CharField(
        label=_("Reason"),
        max_length=500,
        help_text=_("Shown to other moderators and in the audit."),
    )

    allow_low_information = forms.BooleanField(
        label=_("Flag even if low-information"),
        required=False,
        help_text=_(
            "Superusers only. Near-flat images (fog, sky, a plain wall) are refused because they "
            "look alike to the matcher; flagged anyway, a match with one sends an upload to "
            "review instead of blocking it."
        ),
    )

    def __init__(self, *args, superuser: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not superuser:
            del self.fields["allow_low_information"]


class UnflagReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason for unflagging"), max_length=500)
    restore_photos = forms.BooleanField(
        label=_("Also put back the photos these flags took down"),
        required=False,
        help_text=_(
            "Only photos still kept privately whose profile has no newer photo, and that no "
            "other active flag or hash list matches. Their owners are told."
        ),
    )


class RereviewForm(forms.Form):
    reason = forms.CharField(label=_("Why it stays"), max_length=500)


# The "to re-review" choice of the precision filter: poor, active, not re-reviewed since.
TO_REREVIEW = "rereview"


class PrecisionFilter(admin.SimpleListFilter):
    """Flags by the rating of their precision (``moderation.precision``), and the ones the
    dashboard lists for re-review."""

    title = _("precision")
    parameter_name = "precision"

    def lookups(self, request, model_admin):
        return [
            (precision.POOR, _("poor")),
            (precision.OK, _("ok")),
            (precision.NOT_ENOUGH, _("not enough data")),
            (TO_REREVIEW, _("poor, to re-review")),
        ]

    def queryset(self, request, queryset):
        if self.value() == TO_REREVIEW:
            return precision.to_rereview(queryset)
        if self.value() == precision.POOR:
            return precision.poor(queryset)
        if self.value() in precision.RATINGS:
            return queryset.filter(record_rating=self.value())
        return queryset


@admin.register(FlaggedFingerprint)
class FlaggedFingerprintAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "hex_hash",
        "hash_list",
        "record_precision",
        "record_judged",
        "record_matches",
        "source",
        "short_reason",
        "flagged_by",
        "flagged_at",
        "active",
        "suspended",
        "flood_state",
        "original_link",
        "sweep_state",
    ]
    list_filter = [
        PrecisionFilter,
        "active",
        "suspended",
        "flood_state",
        "hash_list",
        "source",
        "flagged_at",
    ]
    list_select_related = ["flagged_by", "hash_list"]
    search_fields = ["reason"]
    search_help_text = _("Search by the 16-digit hex hash or by words in the reason.")
    readonly_fields = [
        "hex_hash",
        "hash_list",
        "pipeline_version",
        "information",
        "reason",
        "source",
        "flagged_by",
        "flagged_at",
        "active",
        "suspension",
        "flood_state",
        "flood_held_at",
        "unflagged_by",
        "unflagged_at",
        "rereviewed_by",
        "rereviewed_at",
        "original_link",
        "sweep_state",
        "variant_table",
    ]
    fields = readonly_fields
    actions = ["unflag_selected", "rereview_selected", "export_selected"]
    change_list_template = "admin/moderation/flaggedfingerprint/change_list.html"
    change_form_template = "admin/moderation/flaggedfingerprint/change_form.html"

    class Media:
        css = {"all": ["moderation/admin.css"]}  # the record panel, no inline style

    @admin.display(description=_("dHash"), ordering="dhash")
    def hex_hash(self, obj: FlaggedFingerprint) -> str:
        return format_html("<code>{}</code>", obj.hex)

    @admin.display(description=_("reason"))
    def short_reason(self, obj: FlaggedFingerprint) -> str:
        return obj.reason if len(obj.reason) <= 60 else obj.reason[:57] + "…"

    @admin.display(description=_("suspended"))
    def suspension(self, obj: FlaggedFingerprint) -> str:
        """The field's explanation only on a flag it is true of: on every other flag it read
        as if the flag were suspended."""
        if not obj.suspended:
            return _("No")
        help_text = FlaggedFingerprint._meta.get_field("suspended").help_text
        return format_html("<strong>{}</strong> — {}", _("Yes"), help_text)

    @admin.display(description=_("original"))
    def original_link(self, obj: FlaggedFingerprint) -> str:
        return quarantine_link(obj.original)

    @admin.display(description=_("sweep of stored photos"))
    def sweep_state(self, obj: FlaggedFingerprint) -> str:
        """The latest sweep for this flag as it stands: queued, running, done with its
        counts, retried after a failure, or failed with its error."""
        return describe_sweep(latest_sweep(obj))

    def get_queryset(self, request):
        """Every flag with its record (``precision.with_record``): counts in the one query."""
        return precision.with_record(super().get_queryset(request)).prefetch_related("sweeps")

    @admin.display(description=_("matches"), ordering="record_matched")
    def record_matches(self, obj: FlaggedFingerprint) -> str:
        """Taken down by its sweeps, uploads refused, near misses queued."""
        return _("%(down)d down, %(refused)d refused, %(queued)d queued") % {
            "down": obj.record_taken_down,
            "refused": obj.record_refused,
            "queued": obj.record_queued,
        }

    @admin.display(description=_("judged"), ordering="record_judged")
    def record_judged(self, obj: FlaggedFingerprint) -> str:
        """Decisions people judged: right (appeal upheld, near miss banned) and wrong (appeal
        overturned, near miss dismissed)."""
        return _("%(right)d right, %(wrong)d wrong") % {
            "right": obj.record_right,
            "wrong": obj.record_wrong,
        }

    @admin.display(description=_("precision"), ordering=F("record_precision").asc(nulls_last=True))
    def record_precision(self, obj: FlaggedFingerprint) -> str:
        """Right over judged, and its rating; "not enough data" below the minimum judged."""
        return precision_cell(precision.Record.of(obj))

    @admin.display(description=_("fingerprints matched"))
    def variant_table(self, obj: FlaggedFingerprint) -> str:
        """Every stored variant (orientations and crops): what an upload is compared with."""
        variants: list[FingerprintVariant] = list(obj.variants.all())
        if not variants:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            (
                (
                    v.get_variant_display(),
                    v.hex,
                    "—" if v.fingerprint.phash is None else f"{v.fingerprint.phash:016x}",
                )
                for v in variants
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>dHash</th><th>pHash</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            _("variant"),
            rows,
        )

    def get_search_results(self, request, queryset, search_term):
        """A 16-digit hex term finds the fingerprint with that hash; anything else the reason."""
        term = search_term.strip()
        try:
            signed = Fingerprint.from_hex(term).signed
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(dhash=signed) | Q(reason__icontains=term)), False

    # The banned set only changes through the flows: no add, edit or delete here.

    def has_flag_permission(self, request) -> bool:
        return request.user.has_perm("moderation.flag_image")

    def has_unflag_permission(self, request) -> bool:
        return request.user.has_perm("moderation.unflag_image")

    @admin.action(description=_("Unflag selected fingerprints"), permissions=["unflag"])
    def unflag_selected(self, request, queryset):
        """Deactivate the selected fingerprints after the moderator gives a reason and, if they
        choose so, put back the photos those flags took down (``flagging.restore_takedowns``):
        in the request, or by the task worker when there are more than
        ``MODERATION_RESTORE_INLINE_MAX``."""
        form = UnflagReasonForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            count = sum(
                flagging.unflag_fingerprint(
                    flagged=flagged, actor=request.user, reason=form.cleaned_data["reason"]
                )
                for flagged in queryset
            )
            self.message_user(
                request,
                ngettext("Unflagged %d fingerprint.", "Unflagged %d fingerprints.", count) % count,
                messages.SUCCESS,
            )
            if form.cleaned_data["restore_photos"]:
                self._restore_takedowns(request, queryset)
            return None
        return TemplateResponse(
            request,
            "admin/moderation/unflag_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Unflag fingerprints"),
                "opts": self.model._meta,
                "queryset": queryset,
                "form": form,
                "kept_takedowns": flagging.kept_takedowns_of(queryset),
                "action": "unflag_selected",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    def _restore_takedowns(self, request, queryset) -> None:
        kept = flagging.kept_takedowns_of(queryset)
        if flagging.restores_in_background(kept):
            # Each photo is screened and stored again: thousands would outlast the request.
            for flagged in queryset:
                flagging.restore_takedowns_later(flagged=flagged, actor=request.user)
            self.message_user(
                request,
                ngettext(
                    "%d photo will be put back in the background, unless another flag or hash "
                    "list still matches it; its owner is told. The audit log lists each one.",
                    "%d photos will be put back in the background, except those another flag "
                    "or hash list still matches; their owners are told. The audit log lists "
                    "each one.",
                    kept,
                )
                % kept,
                messages.SUCCESS,
            )
            return
        restored = still_matched = skipped = 0
        try:
            for flagged in queryset:
                result = flagging.restore_takedowns(flagged=flagged, actor=request.user)
                restored += result.restored
                still_matched += result.still_matched
                skipped += result.skipped
        except StorageUnavailable:
            self.message_user(
                request,
                _(
                    "File storage is unavailable right now: some photos were not put back. "
                    "Try again later: unflag the same flags again with the box ticked."
                ),
                messages.ERROR,
            )
        self.message_user(
            request,
            ngettext(
                "Put back %d photo; its owner is told.",
                "Put back %d photos; their owners are told.",
                restored,
            )
            % restored,
            messages.SUCCESS,
        )
        if still_matched or skipped:
            self.message_user(
                request,
                _(
                    "Left down: %(matched)d still matched by another flag or hash list, "
                    "%(skipped)d with a newer photo on the profile or no kept copy."
                )
                % {"matched": still_matched, "skipped": skipped},
                messages.WARNING,
            )

    @admin.action(description=_("Mark selected re-reviewed (keep them)"), permissions=["flag"])
    def rereview_selected(self, request, queryset):
        """Keep the selected flags after reading their records: each is marked re-reviewed
        (``desk.flag_rereview``, audited with the reason) and leaves the "Flags to re-review"
        until a decision about one of its matches is judged. Unflagging is the Unflag action."""
        return confirm_with_reason(
            self,
            request,
            form_class=RereviewForm,
            act=lambda reason: sum(
                desk.flag_rereview(flagged=flagged, actor=request.user, reason=reason)
                for flagged in queryset
            ),
            done=lambda count: ngettext(
                "Marked %d flag re-reviewed (kept).", "Marked %d flags re-reviewed (kept).", count
            )
            % count,
            template="admin/moderation/flaggedfingerprint/rereview_confirmation.html",
            title=_("Keep flags after re-review"),
            action="rereview_selected",
            context={"flags": [(flagged, precision.Record.of(flagged)) for flagged in queryset]},
        )

    @admin.action(description=_("Export selected (CSV)"), permissions=["view"])
    def export_selected(self, request, queryset):
        """Download the selected active fingerprints in the exchange format
        (``moderation.exchange``, the same CSV as ``manage.py export_fingerprints``)."""
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="fingerprints.csv"'
        exchange.write(exchange.fingerprint_records(queryset), response, "csv")
        return response

    def get_urls(self):
        urls = [
            path(
                "flag-image/",
                self.admin_site.admin_view(self.flag_image_view),
                name="moderation_flaggedfingerprint_flag_image",
            ),
            path(
                "<int:pk>/rereview/",
                self.admin_site.admin_view(self.rereview_view),
                name="moderation_flaggedfingerprint_rereview",
            ),
            path(
                "<int:pk>/flood/",
                self.admin_site.admin_view(self.flood_decision_view),
                name="moderation_flaggedfingerprint_flood",
            ),
        ]
        return urls + super().get_urls()

    def flood_decision_view(self, request, pk: int):
        """POST ``decision=resume`` (needs ``flag_image``: the held takedowns run) or
        ``decision=drop`` (needs ``unflag_image``) for a flag the flood guard held."""
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        flagged = FlaggedFingerprint.objects.filter(pk=pk).first()
        if flagged is None:
            raise Http404(_("No such flag."))
        decision = request.POST.get("decision")
        if decision == "resume":
            if not self.has_flag_permission(request):
                raise PermissionDenied
            done = desk.flood_resume(flagged=flagged, actor=request.user)
            message = _("Resumed: the flag is enforced again and its held takedowns run.")
        elif decision == "drop":
            if not self.has_unflag_permission(request):
                raise PermissionDenied
            done = desk.flood_drop(flagged=flagged, actor=request.user)
            message = _("Dropped: the flag is unflagged; nothing more is taken down.")
        else:
            return HttpResponse(status=400)
        if done:
            self.message_user(request, message, messages.SUCCESS)
        else:
            self.message_user(
                request, _("The flag is not held (already decided)."), messages.WARNING
            )
        return redirect("admin:moderation_dashboard")

    def rereview_view(self, request, pk: int):
        """POST ``reason``: keep this flag after reading its record (needs ``flag_image``)."""
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        if not self.has_flag_permission(request):
            raise PermissionDenied
        flagged = FlaggedFingerprint.objects.filter(pk=pk).first()
        if flagged is None:
            raise Http404(_("No such flag."))
        form = RereviewForm(request.POST)
        if not form.is_valid():
            self.message_user(request, _("Nothing marked: say why the flag stays."), messages.ERROR)
        elif desk.flag_rereview(
            flagged=flagged, actor=request.user, reason=form.cleaned_data["reason"]
        ):
            self.message_user(
                request,
                _("Marked re-reviewed: the flag stays, and leaves the flags to re-review."),
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, _("The flag is no longer active: nothing to keep."), messages.WARNING
            )
        return redirect("admin:moderation_flaggedfingerprint_change", pk)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The flag's page, with its record above the fields (``precision``)."""
        flagged = self.get_object(request, object_id)
        if flagged is not None:
            extra_context = {
                **(extra_context or {}),
                "record": precision.Record.of(flagged),
                "to_rereview": precision.to_rereview(
                    FlaggedFingerprint.objects.filter(pk=flagged.pk)
                ).exists(),
                "poor_below": moderation_settings.PRECISION_POOR_BELOW,
                "min_judged": moderation_settings.PRECISION_MIN_JUDGED,
                "can_rereview": flagged.active and self.has_flag_permission(request),
                "can_unflag": flagged.active and self.has_unflag_permission(request),
                "rereview_form": RereviewForm(),
                "unflag_url": reverse("admin:moderation_flaggedfingerprint_changelist")
                + f"?q={flagged.hex}",
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_flag": self.has_flag_permission(request)}
        return super().changelist_view(request, extra_context)

    def flag_image_view(self, request):
        """Upload a file straight into the banned set (its original is kept privately)."""
        if not self.has_flag_permission(request):
            raise PermissionDenied
        form = FlagImageForm(
            request.POST or None, request.FILES or None, superuser=request.user.is_superuser
        )
        if request.method == "POST" and form.is_valid():
            try:
                result = flagging.flag_image(
                    file=form.cleaned_data["image"],
                    reason=form.cleaned_data["reason"],
                    source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
                    actor=request.user,
                    allow_low_information=form.cleaned_data.get("allow_low_information", False),
                )
            except ValidationError as e:
                form.add_error("image", e)
            except StorageUnavailable:
                form.add_error(
                    None,
                    _("File storage is unavailable right now, so nothing was flagged. Try again."),
                )
            else:
                if result.created:
                    text = _("Flagged %(hex)s. Sweep of stored photos: %(sweep)s.")
                else:
                    text = _("%(hex)s was already banned; your flag was added to its audit trail.")
                sweep = sweeps_summary([result.fingerprint.pk])
                self.message_user(
                    request,
                    text % {"hex": result.fingerprint.hex, "sweep": sweep},
                    messages.SUCCESS,
                )
                result.fingerprint.refresh_from_db()
                if result.fingerprint.held:
                    self.message_user(
                        request,
                        _(
                            "The flood guard held this flag: it matched more users' photos than "
                            "MODERATION_FLOOD_MAX_USERS allows. Nothing more is taken down until "
                            "you resume or drop it on the dashboard."
                        ),
                        messages.WARNING,
                    )
                return redirect("admin:moderation_flaggedfingerprint_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Flag an image"),
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/moderation/flag_image.html", context)
