"""The site's own middleware: refuse oversized bodies, tag requests for the logs, and the
one security header Django has no setting for.

``RequestSizeLimitMiddleware``: Django caps form fields (DATA_UPLOAD_MAX_MEMORY_SIZE) but
streams any size of file upload to disk. A profile photo has a byte limit anyway, so a body far
past it is refused at once with a 413 and a friendly page, instead of being written to a
temporary file first. Under ``/api/`` the 413 is JSON, as every API error is.
"""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render

from config.jsonlog import current_request, request_id_for
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


class RequestContextMiddleware:
    """Give each request an id, log it with every line written while serving it, and send it
    back as ``X-Request-ID`` (so a user's report or the proxy's log finds the lines)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_for(request.headers.get("X-Request-ID"))
        token = current_request.set(request)
        try:
            response = self.get_response(request)
        finally:
            current_request.reset(token)
        response.headers.setdefault("X-Request-ID", request.request_id)
        return response


class PermissionsPolicyMiddleware:
    """``Permissions-Policy`` on every response (Django has no setting for it): the site
    needs no camera, microphone, location, payment or other powerful feature, so a page (or a
    user's file, should one ever be rendered) cannot ask for them."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.header = ", ".join(f"{feature}=()" for feature in settings.PERMISSIONS_POLICY_DENY)

    def __call__(self, request):
        response = self.get_response(request)
        if self.header:
            response.headers.setdefault("Permissions-Policy", self.header)
        return response
