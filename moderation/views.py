"""Staff-only access to quarantined files (flagged originals and taken-down photos).

Quarantine storage has no public URL; this view is the only way to see its files, and it
checks the ``moderation.view_quarantine`` permission on every request, for a staff session that
has verified its second factor (as the admin does).
"""

import mimetypes

from django.contrib.auth.decorators import permission_required, user_passes_test
from django.http import FileResponse, Http404, HttpResponse
from django.views.decorators.http import require_GET

from moderation.files import StorageUnavailable, storage_errors
from moderation.models import AuditEvent, FlaggedFingerprint, quarantine_storage


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
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Disposition"] = "inline"
    return response
