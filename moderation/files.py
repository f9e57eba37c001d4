"""The file rules every flow follows, and the private (quarantine) copies it makes.

A file is written *before* the rows that point at it, and removed again if the transaction
fails; a public file is deleted only after the transaction that stopped pointing at it has
committed. So no row ever points at a missing file, and a rollback never loses a photo.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.db import transaction
from django.tasks import task

from moderation.background import enqueue_on_commit
from moderation.decoding import image_format
from moderation.models import quarantine_storage

logger = logging.getLogger(__name__)

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}


class StorageUnavailable(OSError):
    """File storage failed (outage, network, permissions); nothing was changed. Retry later.

    An ``OSError`` so callers that already treat I/O failures as "could not read" keep working;
    a missing file stays ``FileNotFoundError``, which means something else (see take-down).
    """


def _storage_failures() -> tuple[type[BaseException], ...]:
    failures: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # S3 support not installed: only local storage can fail
        pass
    else:
        failures += [BotoCoreError, ClientError]
    return tuple(failures)


@contextmanager
def storage_errors():
    """Turn storage failures into ``StorageUnavailable``; a missing file stays what it is."""
    try:
        yield
    except (FileNotFoundError, StorageUnavailable):
        raise
    except _storage_failures() as e:
        raise StorageUnavailable(f"file storage failed: {e}") from e


def copy_to_quarantine(file: Any, folder: str) -> str:
    """Copy an image into private storage under a random name; return the stored name."""
    ext = _EXTENSIONS.get(image_format(file) or "", "bin")
    name = f"{folder}/{uuid.uuid4().hex}.{ext}"
    if hasattr(file, "seek"):
        file.seek(0)
    with storage_errors():
        stored = quarantine_storage().save(name, ContentFile(file.read()))
    if hasattr(file, "seek"):
        file.seek(0)
    return stored


def delete_quietly(storage, name: str) -> None:
    """Delete a file, logging (never raising) a failure: cleanup must not hide the error that
    caused it, and an orphan file is better than a failed request."""
    try:
        storage.delete(name)
    except Exception:  # noqa: BLE001
        logger.exception("could not delete %s from %s", name, storage)


def delete_after_commit(storage, name: str) -> None:
    """Delete a file once the current transaction has committed (never if it rolls back)."""
    transaction.on_commit(lambda: delete_quietly(storage, name))


def remove_banned_copy_after_commit(storage, name: str) -> None:
    """Delete the public file of a banned copy once the takedown commits, even if this process
    dies right after the commit.

    ``delete_after_commit`` alone runs in this process after the commit: a worker killed in
    between (out of memory, a deploy) would leave the banned picture public under its name for
    good, with nothing left to say so. So a ``delete_public_file_task`` is also queued with
    the takedown (with the database task backend, inside its transaction: both commit or
    neither), and a worker deletes the file if it is still there; deleting is idempotent, and a
    storage outage makes the task fail and be retried. A storage that is not one of
    ``settings.STORAGES`` cannot be named in a task and keeps the in-process delete only.
    """
    delete_after_commit(storage, name)
    alias = _alias_of(storage)
    if alias is None:
        logger.warning("%s is not in STORAGES: %s is deleted in this process only", storage, name)
        return
    enqueue_on_commit(delete_public_file_task, alias, name)


def _alias_of(storage) -> str | None:
    if storage is default_storage:  # a lazy proxy of storages["default"]
        return "default"
    for alias in settings.STORAGES:
        if storages[alias] is storage:
            return alias
    return None


@task
def delete_public_file_task(alias: str, name: str) -> bool:
    """Delete ``name`` from storage ``alias`` if it is still there (True when it was)."""
    storage = storages[alias]
    with storage_errors():
        if not storage.exists(name):
            return False
        storage.delete(name)
    return True


def delete_from_quarantine(name: str) -> None:
    delete_quietly(quarantine_storage(), name)
