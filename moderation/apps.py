from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class ModerationConfig(AppConfig):
    name = "moderation"
    verbose_name = _("Moderation")

    def ready(self) -> None:
        # The system checks register themselves when imported (stored_backfill's too).
        from moderation import checks, stored_backfill  # noqa: F401

        # A fresh install's index of stored images is complete at once.
        post_migrate.connect(stored_backfill.mark_fresh_targets_complete, sender=self)
