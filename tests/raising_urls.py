"""The site's URLs plus one view that fails, for the error-reporting tests."""

from django.urls import path

from config.urls import urlpatterns as site_urlpatterns

ERROR_TEXT = "the view failed on purpose"


def failing_view(request):
    raise RuntimeError(ERROR_TEXT)


urlpatterns = [path("fails", failing_view), *site_urlpatterns]
