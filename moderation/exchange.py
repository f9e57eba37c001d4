"""The hash-list exchange format: what ``export_fingerprints`` writes and
``import_fingerprints`` reads (and the admin's "Export selected" action downloads).

One record per actively banned image, in CSV (with a header row) or JSON lines. Fields:

``dhash``             the upright image's dHash, 16 hex digits
``list``              the hash list's name
``reason``, ``source`` why it was banned, and how (``FlaggedFingerprint.Source``)
``created``           when it was flagged, ISO 8601 with offset
``pipeline_version``  the fingerprint pipeline that computed the hashes
``information``       informative dHash bits (empty: unknown, from before pipeline 3)
``variants``          every stored variant, what the index matches. JSON: a list of
                      ``[variant, dhash, phash]`` (phash null when unknown); CSV: the same
                      as ``variant:dhash:phash`` separated by spaces (``-`` for no pHash).
                      ``variant`` is the number in ``variants.VARIANTS``: 0-7 orientations,
                      8 and up crops (exports before pipeline 4 have orientations only)
``list_max_distance``, ``list_enabled``, ``list_mode``
                      the list's settings, used only when the import creates the list

Everything the banned-set index holds for an image is in its record, so importing an export
into an empty site reproduces the banned set exactly; importing it again changes nothing
(a record whose upright dHash is already actively banned is skipped).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, fields
from typing import IO

from moderation.services import FingerprintRecord

FORMATS = ("csv", "jsonl")
FIELDS = [f.name for f in fields(FingerprintRecord)]


def _variants_text(variants) -> str:
    return " ".join(f"{o}:{d}:{p or '-'}" for o, d, p in variants)


def _parse_variants_text(text: str) -> tuple[tuple[int, str, str | None], ...]:
    out = []
    for part in text.split():
        number, dhash, phash = part.split(":")
        out.append((int(number), dhash, None if phash == "-" else phash))
    return tuple(out)


def write(records: Iterable[FingerprintRecord], out: IO[str], fmt: str) -> int:
    """Write ``records`` to ``out`` in ``fmt``; return how many."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            row = asdict(record)
            row["variants"] = _variants_text(record.variants)
            row["information"] = "" if record.information is None else record.information
            row["list_max_distance"] = (
                "" if record.list_max_distance is None else record.list_max_distance
            )
            row["list_enabled"] = "true" if record.list_enabled else "false"
            writer.writerow(row)
            count += 1
    elif fmt == "jsonl":
        for record in records:
            row = asdict(record)
            row["variants"] = [list(v) for v in record.variants]
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return count


def _optional_int(value) -> int | None:
    return None if value in ("", None) else int(value)


def read(source: IO[str], fmt: str) -> Iterator[FingerprintRecord]:
    """Records from ``source``; raises ``ValueError`` naming the line of a malformed one."""
    if fmt == "csv":
        rows = csv.DictReader(source)
        missing = set(FIELDS[:8]) - set(rows.fieldnames or [])
        if missing:
            raise ValueError(f"CSV header lacks {', '.join(sorted(missing))}")
        for line, row in enumerate(rows, start=2):
            try:
                yield FingerprintRecord(
                    dhash=row["dhash"],
                    list=row["list"],
                    reason=row["reason"],
                    source=row["source"],
                    created=row["created"],
                    pipeline_version=int(row["pipeline_version"]),
                    information=_optional_int(row["information"]),
                    variants=_parse_variants_text(row["variants"]),
                    list_max_distance=_optional_int(row.get("list_max_distance")),
                    list_enabled=(row.get("list_enabled") or "true").lower() == "true",
                    list_mode=row.get("list_mode") or "enforce",
                )
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"line {line}: {e}") from e
    elif fmt == "jsonl":
        for line, text in enumerate(source, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
                row["variants"] = tuple(tuple(v) for v in row["variants"])
                yield FingerprintRecord(**{k: v for k, v in row.items() if k in FIELDS})
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"line {line}: {e}") from e
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def guess_format(name: str) -> str:
    return "csv" if name.lower().endswith(".csv") else "jsonl"
