"""Shared by the bulk commands: turn PATH arguments into image files, folders recursively."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from django.core.management.base import CommandError


def iter_image_paths(paths: list[str]) -> Iterator[Path]:
    """Every regular file named by ``paths``, walking folders recursively in sorted order.

    Files are judged by content later (``moderation.decoding``), not by extension, so
    everything found is yielded; hidden files and folders are skipped. Every argument is
    checked before the first file is yielded, so a mistyped path stops the command before it
    has done anything.
    """
    missing = [raw for raw in paths if not Path(raw).exists()]
    if missing:
        raise CommandError(f"{', '.join(missing)}: no such file or folder")
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if child.is_file() and not any(part.startswith(".") for part in relative):
                    yield child
        else:
            yield path
