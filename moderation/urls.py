from django.urls import path

from moderation import views

app_name = "moderation"

urlpatterns = [
    path("quarantine/<path:name>", views.quarantined_file, name="quarantined-file"),
    path("image-viewed/", views.image_viewed, name="image-viewed"),
    path("image-preference/", views.image_preference, name="image-preference"),
]
