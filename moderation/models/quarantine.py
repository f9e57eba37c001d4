"""Where quarantined files live: the private storage of flagged originals and takedown evidence.

Kept apart from the models that use it because migrations name ``quarantine_storage`` as the
FileFields' storage; it is re-exported as ``moderation.models.quarantine_storage``.
"""

from __future__ import annotations

from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.functional import LazyObject, empty


class QuarantineStorage(LazyObject):
    """``storages["quarantine"]``, resolved on first use like Django's ``default_storage``.

    A FileField resolves its storage once, at import; being lazy means a changed STORAGES
    setting (tests, or a deployment switching to S3) is honoured without a migration.
    """

    def _setup(self) -> None:
        self._wrapped = storages["quarantine"]


_quarantine = QuarantineStorage()


@receiver(setting_changed)
def _forget_quarantine_storage(*, setting: str, **kwargs) -> None:
    if setting == "STORAGES":
        _quarantine._wrapped = empty


def quarantine_storage() -> QuarantineStorage:
    """Private storage for flagged originals and taken-down photos (never given a public URL)."""
    return _quarantine
