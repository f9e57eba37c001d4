"""The file formats hash lists are exchanged in: read one line, write one entry. Pure, no ORM.

``text``    one hash a line, hex, optionally followed by tags (separated by spaces or commas):
            ``<hash> [tag ...]``. A 32-digit hash is an MD5; a 64-digit one is a PDQ unless the
            import says its bare 64-digit hashes are SHA-256. ``#`` starts a comment line.
``te``      python-threatexchange's signal file (``LocalFileSignalExchangeAPI``, what its
            ``file`` exchange reads and ``report_opinion`` appends): ``<signal_type> <hash>``
            a line, e.g. ``pdq 3f0c...``; threatexchange's ``video_md5``/``video_sha256`` are
            read as MD5/SHA-256 of the file, and written back under those names.
``te-csv``  python-threatexchange's dataset CSV (``threatexchange dataset -P --csv``): a header
            ``signal_type,signal_str,collab,category,tags``, tags separated by spaces. Only
            ``POSITIVE_CLASS`` rows (or an empty category) are bans; other rows are skipped
            with a message. ``collab`` becomes the entry's source unless the import names one.

Every malformed line raises ``ValueError`` with what is wrong; the reader adds the line number.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

FORMATS = ("text", "te", "te-csv")
TE_CSV_FIELDS = ["signal_type", "signal_str", "collab", "category", "tags"]
POSITIVE = "POSITIVE_CLASS"

_DIGITS = {"pdq": 64, "md5": 32, "sha256": 64}
_NAMES = {
    "pdq": "pdq",
    "md5": "md5",
    "sha256": "sha256",
    "video_md5": "md5",
    "video_sha256": "sha256",
}
# How each type is named in the threatexchange formats on export.
TE_NAMES = {"pdq": "pdq", "md5": "video_md5", "sha256": "video_sha256"}
_HEX = re.compile(r"^[0-9a-f]+$")
_TAG_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class Row:
    """One hash read from a file."""

    signal_type: str  # pdq, md5, sha256
    value: str  # lowercase hex
    tags: str = ""  # space separated
    source: str = ""  # from the file itself (te-csv's collab), if any


def checked_hash(signal_type: str, value: str) -> tuple[str, str]:
    """(our type name, lowercase hex); ``ValueError`` for an unknown type or a bad hash."""
    kind = _NAMES.get(signal_type.strip().lower())
    if kind is None:
        raise ValueError(f"unknown signal type {signal_type!r}")
    text = value.strip().lower()
    if len(text) != _DIGITS[kind]:
        raise ValueError(f"a {kind} hash is {_DIGITS[kind]} hex digits, got {len(text)}")
    if not _HEX.match(text):
        raise ValueError(f"a {kind} hash is hex digits (0-9, a-f)")
    return kind, text


def tags_of(text: str) -> str:
    """Tags as stored: space separated, in the file's order, no duplicates."""
    seen: dict[str, None] = {}
    for tag in _TAG_SPLIT.split(text.strip()):
        if tag:
            seen.setdefault(tag[:100], None)
    return " ".join(seen)[:500]


def parse_line(fmt: str, line: str, *, bare_type: str = "pdq") -> Row | None:
    """The hash on one line of ``fmt`` (not ``te-csv``: see ``parse_csv_row``); None for a
    blank or comment line. ``bare_type``: what a bare 64-digit hash is (pdq or sha256)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if fmt == "text":
        bare = text.lower()
        if len(bare) in (32, 64) and _HEX.match(bare):  # the usual line: a hash alone
            return Row("md5" if len(bare) == 32 else bare_type, bare)
        first, _, rest = text.partition(" ")
        if "," in first:  # "<hash>,tag,tag"
            first, _, more = first.partition(",")
            rest = f"{more} {rest}"
        digits = len(first)
        kind = "md5" if digits == 32 else bare_type if digits == 64 else "pdq"
        kind, value = checked_hash(kind, first)
        return Row(kind, value, tags_of(rest))
    if fmt == "te":
        parts = text.split()
        if len(parts) == 1:
            return Row(*checked_hash(bare_type, parts[0]))
        if len(parts) != 2:
            raise ValueError(f"expected '<signal_type> <hash>', got {len(parts)} fields")
        return Row(*checked_hash(parts[0], parts[1]))
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def parse_csv_row(row: dict[str, str]) -> Row | None:
    """The hash of one te-csv row; None for a row that is not a ban (not POSITIVE_CLASS)."""
    category = (row.get("category") or "").strip()
    if category and category != POSITIVE:
        raise ValueError(f"category {category} is not a ban (only {POSITIVE} is imported)")
    kind, value = checked_hash(row.get("signal_type") or "", row.get("signal_str") or "")
    return Row(kind, value, tags_of(row.get("tags") or ""), (row.get("collab") or "").strip())


def csv_rows(lines) -> csv.DictReader:
    """A te-csv reader over ``lines``; ``ValueError`` when the header lacks a column."""
    reader = csv.DictReader(lines)
    missing = {"signal_type", "signal_str"} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"te-csv header lacks {', '.join(sorted(missing))}")
    return reader


def header(fmt: str) -> str:
    """What a file of ``fmt`` starts with."""
    return ",".join(TE_CSV_FIELDS) + "\n" if fmt == "te-csv" else ""


def format_entry(fmt: str, signal_type: str, value: str, tags: str = "", source: str = "") -> str:
    """One entry as a line of ``fmt`` (with its newline)."""
    if fmt == "text":
        return f"{value} {tags}".rstrip() + "\n"
    if fmt == "te":
        return f"{TE_NAMES[signal_type]} {value}\n"
    if fmt == "te-csv":
        # csv quoting for the free-text columns
        out = _CsvLine()
        csv.writer(out, lineterminator="\n").writerow(
            [TE_NAMES[signal_type], value, source, POSITIVE, tags]
        )
        return out.text
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


class _CsvLine:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


def guess_format(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "te-csv"
    if lowered.endswith(".te") or lowered.endswith(".signals"):
        return "te"
    return "text"
