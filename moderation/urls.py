from django.urls import path

from moderation import two_factor_views, views

app_name = "moderation"

urlpatterns = [
    path("quarantine/<path:name>", views.quarantined_file, name="quarantined-file"),
    path(
        "refusal-thumbnail/<int:pk>/", views.refusal_thumbnail, name="refusal-thumbnail"
    ),
    path("image-viewed/", views.image_viewed, name="image-viewed"),
    path("image-preference/", views.image_preference, name="image-preference"),
    path("two-factor/", two_factor_views.manage, name="two-factor-manage"),
    path("two-factor/enrol/", two_factor_views.enrol, name="two-factor-enrol"),
    path("two-factor/verify/", two_factor_views.verify, name="two-factor-verify"),
    path(
        "two-factor/recovery-codes/",
        two_factor_views.recovery_codes,
        name="two-factor-recovery-codes",
    ),
    path("two-factor/revoke/", two_factor_views.revoke, name="two-factor-revoke"),
]
