from django.urls import path

from moderation import views

app_name = "moderation"

urlpatterns = [
    path("quarantine/<path:name>", views.quarantined_file, name="quarantined-file"),
]
