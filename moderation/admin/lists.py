"""Hash lists in the admin: each list's distance, switch and mode, the page to try a distance
on a list, and the shadow hits those trials record. Policy changes go through ``hash_lists``.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import hash_lists, pdq, precision
from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin
from moderation.conf import moderation_settings
from moderation.models import HashList, ShadowHit, SignalEntry


class HashListForm(forms.ModelForm):
    class Meta:
        model = HashList
        fields = [
            "name", "description", "public_description", "max_distance", "pdq_distance",
            "enabled", "mode",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Left out (an older form, a script), the list keeps its PDQ distance. A view-only
        # page's form has no editable fields at all.
        if "pdq_distance" in self.fields:
            self.fields["pdq_distance"].required = False

    def clean_pdq_distance(self):
        value = self.cleaned_data.get("pdq_distance")
        if value is None:
            return self.instance.pdq_distance if self.instance.pk else pdq.MATCH_DISTANCE
        if value > hash_lists.MAX_PDQ_DISTANCE:
            raise ValidationError(
                _("At most %(max)s."), params={"max": hash_lists.MAX_PDQ_DISTANCE}
            )
        return value

    def clean_max_distance(self):
        value = self.cleaned_data["max_distance"]
        if value is not None and value > moderation_settings.REVIEW_DISTANCE:
            raise ValidationError(
                _("At most %(max)s (MODERATION_REVIEW_DISTANCE)."),
                params={"max": moderation_settings.REVIEW_DISTANCE},
            )
        return value


class TrialDistanceForm(forms.Form):
    distance = forms.IntegerField(
        label=_("Proposed dHash distance"),
        min_value=0,
        max_value=64,
        help_text=_("Bits (<=). At most MODERATION_REVIEW_DISTANCE."),
    )


@admin.register(HashList)
class HashListAdmin(PlainRelationsMixin, admin.ModelAdmin):
    """Named lists, each with its own distance, switch and mode. Saving a change to the
    matching policy goes through ``hash_lists.hash_list_update`` so every process follows."""

    form = HashListForm
    list_display = [
        "name", "max_distance", "pdq_distance", "enabled", "mode", "trial", "flag_count",
        "entry_count", "created_at",
    ]
    list_filter = ["enabled", "mode"]
    search_fields = ["name"]
    readonly_fields = ["trial", "record"]
    change_form_template = "admin/moderation/hashlist/change_form.html"

    class Media:
        css = {"all": ["moderation/admin.css"]}  # the record's table, no inline style

    @admin.display(description=_("record"))
    def record(self, obj: HashList) -> str:
        """The list's summary (``precision.list_record``): its flags' and its entries' matches
        and judged decisions pooled, and how many of its flags are rated poor, ok or not
        enough data, each linked to the flags' list filtered so."""
        if obj.pk is None:
            return "—"
        summary = precision.list_record(obj)
        flags_url = reverse("admin:moderation_flaggedfingerprint_changelist")
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    label,
                    record.matched,
                    record.right,
                    record.wrong,
                    record.judged,
                    record.summary,
                )
                for label, record in (
                    (_("flags"), summary.flags),
                    (_("PDQ / MD5 / SHA-256 entries"), summary.entries),
                )
            ),
        )
        ratings = format_html_join(
            ", ",
            '<a href="{}?hash_list__id__exact={}&amp;precision={}">{} {}</a>',
            (
                (flags_url, obj.pk, rating, count, precision.RATINGS[rating])
                for rating, count in (
                    (precision.POOR, summary.flags_poor),
                    (precision.OK, summary.flags_ok),
                    (precision.NOT_ENOUGH, summary.flags_not_enough),
                )
            ),
        )
        return format_html(
            '<table id="list-record"><thead><tr><th></th><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>"
            "<p>{}: {}</p><p class=\"help\">{}</p>",
            _("matches"),
            _("judged right"),
            _("judged wrong"),
            _("judged"),
            _("precision"),
            rows,
            _("Its flags by precision"),
            ratings,
            _(
                "A flag's matches: photos its sweeps took down, uploads it refused, near misses "
                "it queued; right: appeals upheld and near misses banned; wrong: appeals "
                "overturned and near misses dismissed. An entry's matches are every upload that "
                "matched it; right: its queued matches banned; wrong: its matches dismissed. "
                "Precision = right ÷ judged, pooled over the list; rated after %(min)d judged "
                "decisions, poor below %(below)d %%."
            )
            % {
                "min": moderation_settings.PRECISION_MIN_JUDGED,
                "below": moderation_settings.PRECISION_POOR_BELOW,
            },
        )

    @admin.display(description=_("distance on trial"))
    def trial(self, obj: HashList) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:moderation_hashlist_trial", args=[obj.pk])
        if obj.proposed_distance is None:
            return format_html('<a href="{}">{}</a>', url, _("none — try a distance"))
        hits = ShadowHit.objects.filter(
            hash_list=obj, kind=ShadowHit.Kind.DISTANCE, created_at__gte=obj.proposed_at
        ).count()
        return format_html(
            '<a href="{}">{}</a>',
            url,
            ngettext(
                "%(d)s (enforced %(e)s): %(n)s upload would be caught",
                "%(d)s (enforced %(e)s): %(n)s uploads would be caught",
                hits,
            )
            % {"d": obj.proposed_distance, "e": obj.effective_distance, "n": hits},
        )

    def get_urls(self):
        urls = [
            path(
                "<int:object_id>/trial/",
                self.admin_site.admin_view(self.trial_view),
                name="moderation_hashlist_trial",
            ),
            path(
                "<int:object_id>/flood/",
                self.admin_site.admin_view(self.flood_decision_view),
                name="moderation_hashlist_flood",
            ),
        ]
        return urls + super().get_urls()

    def flood_decision_view(self, request, object_id: int):
        """POST ``decision=resume`` (back to enforce: its sweep runs again, unguarded) or
        ``decision=drop`` (left in shadow, the hold closed) for a list the flood guard held;
        both need ``moderation.change_hashlist``. Back to the dashboard, which lists them."""
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        hash_list = HashList.objects.filter(pk=object_id).first()
        if hash_list is None:
            raise Http404(_("No such hash list."))
        if not self.has_change_permission(request, hash_list):
            raise PermissionDenied
        decision = request.POST.get("decision")
        if decision == "resume":
            done = hash_lists.hash_list_flood_resume(hash_list=hash_list, actor=request.user)
            message = _("Resumed: the list is enforced again and its sweep runs, unguarded.")
        elif decision == "drop":
            done = hash_lists.hash_list_flood_drop(hash_list=hash_list, actor=request.user)
            message = _("Dropped: the list stays in shadow; it takes down nothing.")
        else:
            return HttpResponse(status=400)
        if done:
            self.message_user(request, message, messages.SUCCESS)
        else:
            self.message_user(
                request, _("The list is not held (already decided)."), messages.WARNING
            )
        return redirect("admin:moderation_dashboard")

    def trial_view(self, request, object_id: int):
        """Try a distance on this list (shadow-test it), then promote or discard it.

        Anyone who may view lists sees the trial and its hits; proposing, promoting and
        discarding need ``moderation.change_hashlist`` and go through ``hash_lists`` (audited,
        every process follows from its next lookup)."""
        hash_list = HashList.objects.filter(pk=object_id).first()
        if hash_list is None:
            raise Http404(_("No such hash list."))
        if not self.has_view_permission(request, hash_list):
            raise PermissionDenied
        can_change = self.has_change_permission(request, hash_list)
        form = TrialDistanceForm(
            request.POST if request.POST.get("do") == "propose" else None,
            initial={"distance": hash_list.proposed_distance},
        )
        if request.method == "POST":
            if not can_change:
                raise PermissionDenied
            action = request.POST.get("do")
            try:
                if action == "propose":
                    if form.is_valid():
                        hash_lists.hash_list_propose_distance(
                            hash_list=hash_list,
                            distance=form.cleaned_data["distance"],
                            actor=request.user,
                        )
                        self.message_user(
                            request,
                            _(
                                "Distance %(d)s is on trial: uploads it would catch are "
                                "recorded; nothing changes for users."
                            )
                            % {"d": hash_list.proposed_distance},
                            messages.SUCCESS,
                        )
                        return redirect(request.path)
                elif action == "promote":
                    hash_lists.hash_list_promote_distance(hash_list=hash_list, actor=request.user)
                    self.message_user(
                        request,
                        _("Distance %(d)s is enforced from now on.")
                        % {"d": hash_list.max_distance},
                        messages.SUCCESS,
                    )
                    return redirect(request.path)
                elif action == "discard":
                    hash_lists.hash_list_discard_distance(hash_list=hash_list, actor=request.user)
                    self.message_user(
                        request,
                        _("Trial discarded; the list still enforces %(d)s.")
                        % {"d": hash_list.effective_distance},
                        messages.SUCCESS,
                    )
                    return redirect(request.path)
                else:
                    return HttpResponse(_("Unknown action."), status=400)
            except ValidationError as e:
                if action == "propose":
                    form.add_error("distance", e)
                else:
                    self.message_user(request, " ".join(e.messages), messages.ERROR)
                    return redirect(request.path)
        hits = ShadowHit.objects.filter(hash_list=hash_list, kind=ShadowHit.Kind.DISTANCE)
        if hash_list.proposed_at is not None and hash_list.proposed_distance is not None:
            current = hits.filter(created_at__gte=hash_list.proposed_at)
        else:
            current = hits.none()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Try a distance on %(name)s") % {"name": hash_list.name},
            "opts": self.model._meta,
            "hash_list": hash_list,
            "form": form,
            "can_change": can_change,
            "enforcing": hash_list.enabled and not hash_list.shadow,
            "hits": current.select_related("uploader", "fingerprint")[:50],
            "hit_count": current.count(),
            "all_hit_count": hits.count(),
            "blocked_count": current.filter(outcome=ShadowHit.Outcome.BLOCK).count(),
            "hits_url": reverse("admin:moderation_shadowhit_changelist")
            + f"?hash_list__id__exact={hash_list.pk}&kind__exact=distance",
            "max_distance": moderation_settings.REVIEW_DISTANCE,
        }
        return TemplateResponse(request, "admin/moderation/hashlist/trial.html", context)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_flags=Count("fingerprints", filter=Q(fingerprints__active=True)),
                active_entries=Coalesce(
                    Subquery(
                        SignalEntry.objects.filter(hash_list=OuterRef("pk"), active=True)
                        .order_by()
                        .values("hash_list")
                        .annotate(n=Count("pk"))
                        .values("n")
                    ),
                    0,
                ),
            )
        )

    @admin.display(description=_("active flags"), ordering="active_flags")
    def flag_count(self, obj: HashList) -> int:
        return obj.active_flags

    @admin.display(description=_("PDQ / MD5 / SHA-256 entries"), ordering="active_entries")
    def entry_count(self, obj: HashList) -> str:
        url = reverse("admin:moderation_signalentry_changelist")
        return format_html(
            '<a href="{}?hash_list__id__exact={}&active__exact=1">{}</a>',
            url,
            obj.pk,
            obj.active_entries,
        )

    def save_model(self, request, obj, form, change):
        policy = {
            k: form.cleaned_data[k] for k in ("max_distance", "pdq_distance", "enabled", "mode")
        }
        if not change:
            super().save_model(request, obj, form, change)  # no flags yet: nothing to log
            return
        HashList.objects.filter(pk=obj.pk).update(name=obj.name, description=obj.description)
        hash_lists.hash_list_update(hash_list=obj, actor=request.user, **policy)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # flags point at their list; switch a list off instead

@admin.register(ShadowHit)
class ShadowHitAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """What trials would have done: shadow-mode lists (would be blocked) and proposed list
    distances (would be blocked or queued at proposed distance N). Read before enforcing."""

    list_display = [
        "created_at", "hash_list", "what", "target", "uploader", "fingerprint", "signal_entry",
        "distance",
    ]
    list_filter = ["kind", "hash_list", "outcome", "created_at"]
    list_select_related = ["hash_list", "uploader", "fingerprint", "signal_entry"]
    search_fields = ["target", "uploader__username"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "hash_list",
        "what",
        "target",
        "uploader",
        "fingerprint",
        "signal_entry",
        "distance",
        "confirm_distance",
        "enforced_distance",
    ]
    readonly_fields = fields

    @admin.display(description=_("what the trial would do"), ordering="kind")
    def what(self, obj: ShadowHit) -> str:
        return obj.label
