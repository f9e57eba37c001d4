"""Staff-only views outside the admin's model pages: quarantined files, refusals' thumbnails,
and reviewer wellness.

Quarantine storage has no public URL; ``quarantined_file`` is the only way to see its files, and
it checks the ``moderation.view_quarantine`` permission on every request, for a staff session
that has verified its second factor (as the admin does). ``refusal_thumbnail`` serves the small
picture a refusal keeps in its row under the same checks: it is as private as quarantine.
Opening either on its own counts as an image viewed (an image embedded in a page is counted
when it is revealed).
"""

import mimetypes

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required, user_passes_test
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from moderation import wellness
from moderation.files import StorageUnavailable, storage_errors
from moderation.models import AuditEvent, FlaggedFingerprint, RefusedUpload, quarantine_storage


def _is_referenced(name: str) -> bool:
    return (
        FlaggedFingerprint.objects.filter(original=name).exists()
        or AuditEvent.objects.filter(evidence=name).exists()
    )


def _verified_staff(user) -> bool:
    return user.is_active and user.is_staff and user.is_verified()


@require_GET
@user_passes_test(_verified_staff, login_url="admin:login")
@permission_required("moderation.view_quarantine", raise_exception=True)
def quarantined_file(request, name: str):
    # Only names the database knows are served, so the URL can't be used to walk storage.
    if not _is_referenced(name):
        raise Http404("No such quarantined file.")
    storage = quarantine_storage()
    try:
        with storage_errors():
            handle = storage.open(name, "rb")
    except FileNotFoundError as e:
        raise Http404("The quarantined file is missing from storage.") from e
    except StorageUnavailable:
        return HttpResponse(
            "File storage is unavailable right now. Try again in a moment.",
            status=503,
            content_type="text/plain",
        )
    # A full-size view (opened as a page of its own) counts; an image a page embeds is
    # counted when the moderator reveals it (wellness.js).
    if request.headers.get("Sec-Fetch-Dest", "document") == "document":
        wellness.count_views(user=request.user, views=1)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Disposition"] = "inline"
    return response


@require_GET
@user_passes_test(_verified_staff, login_url="admin:login")
@permission_required("moderation.view_quarantine", raise_exception=True)
def refusal_thumbnail(request, pk: int):
    """The thumbnail a refusal keeps of the refused picture (404 once purged, or when none was
    kept: a file refused as unreadable)."""
    refused = get_object_or_404(RefusedUpload.objects.with_thumbnail(), pk=pk)
    if request.headers.get("Sec-Fetch-Dest", "document") == "document":
        wellness.count_views(user=request.user, views=1)
    response = HttpResponse(bytes(refused.thumbnail), content_type="image/jpeg")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Disposition"] = "inline"
    return response


@require_POST
@staff_member_required
def image_viewed(request):
    """Count images the moderator just looked at (``views``, default 1: a reveal); answers
    today's count as JSON."""
    try:
        views = int(request.POST.get("views", "1"))
    except ValueError:
        return JsonResponse({"error": "views must be a number"}, status=400)
    return JsonResponse({"today": wellness.count_views(user=request.user, views=views)})


@require_POST
@staff_member_required
def image_preference(request):
    """Turn blurring of images on (``blur=1``) or off for the moderator, then go back."""
    wellness.set_blur(user=request.user, blur=request.POST.get("blur") == "1")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = "admin:moderation_dashboard"
    return redirect(back)
