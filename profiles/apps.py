from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = _("Profiles")

    def ready(self) -> None:
        from moderation import registry
        from profiles.models import Profile
        from profiles.photos import reencode_photo

        registry.register(
            registry.ImageTarget(
                model=Profile,
                file_field="photo",
                hash_field="photo_dhash",
                confirm_field="photo_phash",
                version_field="photo_pipeline_version",
                checked_field="photo_checked_at",
                missing_field="photo_missing_since",
                owner_field="user",
                describe=lambda profile: profile.user.get_username(),
                store_as=reencode_photo,
                probes_field="photo_probes",
            )
        )
