"""Which models hold fingerprinted images, so moderation can act on them without importing them.

Dependencies point one way (profiles -> moderation). An app that stores user images registers
its field here from ``AppConfig.ready()``; the sweep, takedown and reindex services then work on
"any registered image field" instead of naming ``profiles.Profile``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models


@dataclass(frozen=True)
class ImageTarget:
    """A model's image field plus the columns that hold its fingerprint.

    ``hash_field`` holds the signed 64-bit dHash (NULL when there is no image),
    ``confirm_field`` its signed 64-bit pHash (NULL also for rows from before pipeline version
    3), ``version_field`` the pipeline version that computed them and ``checked_field`` when the
    image was last compared with the whole banned set. ``missing_field`` (optional) is a
    nullable datetime set when a reindex finds the stored file gone: the owning app hides the
    image while it is set, and the hash stays, so sweeps keep comparing it with the banned set.
    ``owner_field`` (optional) names the uploader, shown to moderators in the review queue.
    ``probes_field`` (optional) is a binary field holding the image's cuts and framed picture
    (``hashing.CheckFingerprints.probe_bytes``), so that sweeps and rechecks compare a stored
    image as the upload path compared it; without it, only the image's own fingerprint.
    ``store_as`` (optional) turns an upload into the file the app stores (a clean re-encoding);
    such an app checks uploads as stored, and ``evaluate_matching`` then hashes its edited
    files the same way.
    """

    model: type[models.Model]
    file_field: str
    hash_field: str
    version_field: str
    checked_field: str
    confirm_field: str
    describe: Callable[[models.Model], str] = str
    missing_field: str | None = None
    # The user who uploaded the image (a foreign key to the user model), for the review queue.
    owner_field: str | None = None
    store_as: Callable[[Any], Any] | None = None
    probes_field: str | None = None

    @property
    def key(self) -> str:
        return f"{self.model._meta.label_lower}.{self.file_field}"

    def with_images(self) -> models.QuerySet:
        return self.model._default_manager.exclude(**{self.file_field: ""}).exclude(
            **{f"{self.file_field}__isnull": True}
        )

    def label(self, instance: models.Model) -> str:
        return f"{self.model._meta.verbose_name} {self.describe(instance)} (#{instance.pk})"


_targets: dict[str, ImageTarget] = {}


def register(target: ImageTarget) -> None:
    _targets[target.key] = target


def targets() -> list[ImageTarget]:
    return list(_targets.values())


def target_for(model: type[models.Model] | models.Model) -> ImageTarget:
    label = model._meta.label_lower
    for target in _targets.values():
        if target.model._meta.label_lower == label:
            return target
    raise LookupError(f"{label} has no registered image field")


def target_by_key(key: str) -> ImageTarget:
    return _targets[key]


def upload_store_as() -> Callable[[Any], Any] | None:
    """How uploads are turned into stored files before they are checked (the first registered
    target's ``store_as``), or None when they are checked as uploaded."""
    return next((t.store_as for t in _targets.values() if t.store_as is not None), None)
