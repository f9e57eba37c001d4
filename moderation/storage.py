"""Storage classes for private files."""

from django.core.files.storage import FileSystemStorage


class PrivateFileSystemStorage(FileSystemStorage):
    """Local quarantine: files on disk that have no URL at all.

    A plain FileSystemStorage with ``base_url=None`` quietly falls back to MEDIA_URL, so a stray
    ``.url`` call would print a public-looking path. Here it fails loudly instead; staff reach
    these files only through the permission-checked ``moderation:quarantined-file`` view.
    """

    def url(self, name):
        raise NotImplementedError("Quarantined files have no public URL; use the quarantine view.")
