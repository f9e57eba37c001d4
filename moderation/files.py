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

from django.core.files.base import ContentFile
from django.db import transaction

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


def delete_from_quarantine(name: str) -> None:
    delete_quietly(quarantine_storage(), name)
