"""The lookup API's routes, mounted at ``/api/``: HMA's paths under that prefix, so a client
written for HMA changes its base URL (and sends a token)."""

from django.urls import path, re_path

from moderation.api import views

app_name = "api"

urlpatterns = [
    path("openapi.json", views.openapi_json, name="openapi"),
    path("h/hash", views.hash_media, name="hash"),
    path("m/raw_lookup", views.raw_lookup, name="raw-lookup"),
    path("m/lookup", views.lookup, name="lookup"),
    path("m/compare", views.compare, name="compare"),
    path("m/index/status", views.index_status, name="index-status"),
    # Anything else under /api/ is a JSON 404, not the site's HTML page.
    re_path(r"^(?P<path>.*)$", views.not_found, name="not-found"),
]
