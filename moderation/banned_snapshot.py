"""The snapshot files of a set held once per host: written once, mapped by every process.

Made for the banned set, and used the same way for the hash lists' PDQ entries
(``host_snapshot`` keeps either in step with its change log; ``signal_set`` has its own
sub-folder ``pdq/`` with its own ``current``, lock and snapshots).

Each process used to build its own index of the whole banned set (~69 B per entry, a cold load
of 3-4 s per million entries from the database). A snapshot is that index's arrays
(``BannedIndex.state()``) as ``.npy`` files in a directory, with ``meta.json``: the change-log
id it is consistent with, what it must match (format and pipeline versions, variants per flag,
the information threshold, the database), and each array's dtype, shape and CRC-32. Processes
``np.load(..., mmap_mode="r")`` them: the pages are the kernel's page cache, shared by every
process on the host, and read-only, so no process can write into another's view.

Why a directory of ``.npy`` files rather than one file with offsets: ``np.load`` already
parses, checks and aligns each array, a damaged file fails on its own, and nothing here has to
invent a header format.

Layout of ``MODERATION_SNAPSHOT_DIR``::

    lock                  flock: one builder per host at a time
    current -> snap-...   the snapshot to map (a symlink, replaced atomically)
    snap-<change id>-<time ns>-<pid>/   meta.json, <array>.npy (never changed once published),
                          verified.json (the first reader's CRC check, see _verified_before)
    .building-*/          a snapshot being written (left by a crash: removed by the next one)
    pdq/                  the same layout, for the hash lists' PDQ entries (``signal_set``)

A snapshot is written into ``.building-*``, each file fsynced, renamed to ``snap-*`` and only
then pointed at by ``current``; older snapshots are then removed. A process that still maps a
removed one keeps working (unlinked files stay valid while mapped, on Linux).

No database here: ``banned_set`` and ``signal_set`` decide what goes in, and ``host_snapshot``
checks a snapshot against the change log before using it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Bump when the files or the meaning of an array change: older snapshots are then ignored.
# 2: the banned set's ``data_rows`` (``banned_index._Rows``).
FORMAT_VERSION = 2
CURRENT = "current"
LOCK = "lock"
PREFIX = "snap-"
BUILDING = ".building-"


class SnapshotError(Exception):
    """A snapshot that cannot be used: missing, truncated, corrupt, or made for other code."""


@dataclass(frozen=True)
class Snapshot:
    """One opened snapshot: its directory, its meta data, its arrays (read-only maps)."""

    path: Path
    meta: dict[str, Any]
    arrays: Mapping[str, np.ndarray]

    @property
    def change_id(self) -> int:
        return int(self.meta["change_id"])

    @property
    def entries(self) -> int:
        return int(self.meta["entries"])

    @property
    def name(self) -> str:
        return self.path.name


VERIFIED = "verified.json"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""  # not Linux: never trusted, always checked


def _files_stamp(path: Path, arrays: Mapping[str, Any]) -> dict[str, Any]:
    """What would change if a snapshot's files were rewritten, replaced or the host rebooted:
    the boot id and each array file's inode, size and modification time."""
    files = {}
    for name in arrays:
        st = (path / f"{name}.npy").stat()
        files[name] = [st.st_ino, st.st_size, st.st_mtime_ns]
    return {"boot_id": _boot_id(), "files": files}


def _verified_before(path: Path, stamp: dict[str, Any]) -> bool:
    """Whether a process of this host, since it booted, checked every CRC of these very files.

    The CRC of 10M entries' arrays is about a third of a second, most of a worker's cold
    start: checked by the first process to map a snapshot, trusted by the others. A file
    rewritten or replaced since has another inode, size or time and is checked again, and so
    is everything after a reboot (when the files are read from disk again)."""
    if not stamp["boot_id"]:
        return False
    try:
        return json.loads((path / VERIFIED).read_text()) == stamp
    except (OSError, ValueError):
        return False


def _mark_verified(path: Path, stamp: dict[str, Any]) -> None:
    """Record a successful check (atomically; a folder this process cannot write is checked
    by every process, as before)."""
    if not stamp["boot_id"]:
        return
    tmp = path / f".{VERIFIED}-{os.getpid()}"
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(stamp))
        os.replace(tmp, path / VERIFIED)


def is_mapped(array: Any) -> bool:
    """Whether ``array`` (or the array it is a view of) is a snapshot file's mapped pages,
    not private memory. Snapshots hand out plain ndarray views of their ``np.memmap``s."""
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = getattr(array, "base", None)
    return False


def checksum(array: np.ndarray) -> int:
    """CRC-32 of an array's bytes (~2 GB/s: 0.35 s for 10M entries' 700 MB)."""
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8)) if array.size else 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotStore:
    """The snapshots of one directory. ``compatible``: what a snapshot's meta must hold to be
    used by this code (format version, pipeline version, ...), written into each new one."""

    def __init__(
        self, root: str | os.PathLike, compatible: Mapping[str, Any], *, label: str = "banned-set"
    ) -> None:
        self.root = Path(root)
        self.compatible = {"format_version": FORMAT_VERSION, **compatible}
        self.label = label  # what the snapshots hold, for the warnings

    # --- the host lock -----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, *, blocking: bool) -> Iterator[bool]:
        """Hold the builders' lock; yields False when ``blocking`` is off and another process
        holds it (that process is building: use its snapshot when it is done)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the file releases the lock

    # --- reading -------------------------------------------------------------------------------
    def current_name(self) -> str | None:
        """The directory ``current`` points at (a readlink: cheap enough for every lookup)."""
        try:
            name = os.readlink(self.root / CURRENT)
        except OSError:
            return None
        return name if name.startswith(PREFIX) and "/" not in name else None

    def candidates(self) -> list[Path]:
        """Snapshot directories, the current one first, then the others newest first."""
        try:
            others = sorted(
                (p for p in self.root.iterdir() if p.name.startswith(PREFIX)), reverse=True
            )
        except OSError:
            return []
        current = self.current_name()
        first = [self.root / current] if current else []
        return first + [p for p in others if p.name != current]

    def newest(self) -> Iterator[Snapshot]:
        """Every usable snapshot, newest first (the current one first); each one that cannot
        be used is logged as a warning and skipped."""
        found = False
        for path in self.candidates():
            found = True
            try:
                yield self.open(path)
            except SnapshotError as e:
                logger.warning("%s snapshot %s ignored: %s", self.label, path, e)
        if not found:
            logger.warning("no %s snapshot in %s", self.label, self.root)

    def open(self, path: Path) -> Snapshot:
        """Map and verify one snapshot (every array's dtype, shape and CRC-32)."""
        try:
            meta = json.loads((path / "meta.json").read_text())
            if not isinstance(meta, dict):
                raise SnapshotError("meta.json is not an object")
            for key, value in self.compatible.items():
                if meta.get(key) != value:
                    raise SnapshotError(f"made for {key} {meta.get(key)!r}, this is {value!r}")
            arrays = {}
            for name, spec in meta["arrays"].items():
                file = path / f"{name}.npy"
                if spec["shape"] == [0] or 0 in spec["shape"]:  # an empty array cannot be mapped
                    array = np.load(file, allow_pickle=False)
                else:
                    # Seen as a plain ndarray (still the mapped pages): np.memmap's Python
                    # __getitem__ was ~3% of an upload's CPU, called per chunk of a lookup.
                    array = np.load(file, mmap_mode="r", allow_pickle=False).view(np.ndarray)
                if array.dtype.str != spec["dtype"] or list(array.shape) != spec["shape"]:
                    raise SnapshotError(f"{name}: {array.dtype.str} {array.shape}, not {spec}")
                arrays[name] = array
            stamp = _files_stamp(path, meta["arrays"])
            if not _verified_before(path, stamp):
                # zlib releases the GIL: the arrays are checked on every core at once.
                with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                    sums = dict(zip(arrays, pool.map(checksum, arrays.values())))
                for name, spec in meta["arrays"].items():
                    if sums[name] != spec["crc32"]:
                        raise SnapshotError(f"{name}: checksum mismatch (corrupt file)")
                _mark_verified(path, stamp)
            int(meta["change_id"]), int(meta["entries"])
        except SnapshotError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise SnapshotError(f"{type(e).__name__}: {e}") from e
        return Snapshot(path, meta, arrays)

    # --- writing (the caller holds the lock) ---------------------------------------------------
    def write(self, arrays: Mapping[str, np.ndarray], **meta: Any) -> Snapshot:
        """Write ``arrays`` with ``meta`` (at least ``change_id`` and ``entries``) as a new
        snapshot, make it current, remove the older ones, and return it opened."""
        self.root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=BUILDING, dir=self.root))
        try:
            building.chmod(0o755)  # mkdtemp's is 0700: every process of the host reads it
            specs = {}
            for name, array in arrays.items():
                array = np.ascontiguousarray(array)
                with open(building / f"{name}.npy", "wb") as f:
                    np.lib.format.write_array(f, array, allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
                specs[name] = {
                    "dtype": array.dtype.str,
                    "shape": list(array.shape),
                    "crc32": checksum(array),
                }
            meta = {**self.compatible, **meta, "created": time.time(), "arrays": specs}
            with open(building / "meta.json", "w") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(building)
            name = f"{PREFIX}{int(meta['change_id']):012d}-{time.time_ns()}-{os.getpid()}"
            os.rename(building, self.root / name)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        link = self.root / f".{CURRENT}-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(name, link)
        os.replace(link, self.root / CURRENT)
        _fsync_dir(self.root)
        self.remove_old()
        return self.open(self.root / name)

    def remove_old(self) -> list[str]:
        """Remove every snapshot but the current one, and what crashed builders left. Only
        under the lock (so nothing being written is removed)."""
        current = self.current_name()
        removed = []
        for path in self.root.iterdir():
            if path.name.startswith(PREFIX) and path.name != current:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
            elif path.name.startswith(BUILDING):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(f".{CURRENT}-") and path.is_symlink():
                path.unlink(missing_ok=True)
        return removed
