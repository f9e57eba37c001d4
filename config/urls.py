from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from moderation.readiness import live, ready

urlpatterns = [
    path("live", live, name="live"),
    path("ready", ready, name="ready"),
    path("admin/", admin.site.urls),
    path("moderation/", include("moderation.urls")),
    path("api/", include("moderation.api.urls")),
    path("", include("profiles.urls")),
]

if settings.DEBUG:
    # Local only: public profile photos straight from MEDIA_ROOT. Production serves them from
    # object storage. Quarantine has no URL at all.
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
