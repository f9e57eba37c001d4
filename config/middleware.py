"""Refuse oversized request bodies before Django reads them.

Django caps form fields (DATA_UPLOAD_MAX_MEMORY_SIZE) but streams any size of file upload to
disk. A profile photo has a byte limit anyway, so a body far past it is refused at once with a
413 and a friendly page, instead of being written to a temporary file first. Under ``/api/``
the 413 is JSON, as every API error is.
"""

from django.http import JsonResponse
from django.shortcuts import render

from moderation.conf import moderation_settings


class RequestSizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > moderation_settings.MAX_REQUEST_BYTES:
            limit_mb = moderation_settings.MAX_UPLOAD_BYTES // (1024 * 1024)
            if request.path.startswith("/api/"):
                return JsonResponse(
                    {
                        "message": f"request too large: {length} bytes, the limit is "
                        f"{moderation_settings.MAX_REQUEST_BYTES}"
                    },
                    status=413,
                )
            return render(request, "413.html", {"limit_mb": limit_mb}, status=413)
        return self.get_response(request)
