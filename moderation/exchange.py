"""Exchange: the banned set written out, and read back in, as a hash list.

What ``export_fingerprints`` writes and ``import_fingerprints`` reads (and the admin's "Export
selected" action downloads), and the import of one record into the banned set.

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

import base64
import binascii
import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import IO

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import models

from moderation.banned_set import lock_banned_set, log_change
from moderation.hashing import Fingerprint
from moderation.models import AuditEvent, FingerprintVariant, FlaggedFingerprint, HashList
from moderation.sweeping import sweep_after_commit
from moderation.variants import VARIANTS
from moderation.verification import unpack


@dataclass(frozen=True)
class FingerprintRecord:
    """One banned image as ``export_fingerprints`` writes it and ``import_fingerprints`` reads
    it: everything the index holds for it, so an import reproduces the banned set exactly."""

    dhash: str  # upright dHash, 16 hex digits
    list: str
    reason: str
    source: str
    created: str  # ISO 8601
    pipeline_version: int
    information: int | None
    variants: tuple[tuple[int, str, str | None], ...]  # (variant, dHash hex, pHash hex)
    list_max_distance: int | None = None
    list_enabled: bool = True
    list_mode: str = HashList.Mode.ENFORCE
    # The flag's verification signal (``verification``), base64; empty: none (a list of bare
    # hashes), and its matches are decided by the dHash + pHash rule alone.
    verification: str = ""


def _hex(signed: int | None) -> str | None:
    return None if signed is None else Fingerprint.from_signed(signed).hex


def fingerprint_records(queryset: models.QuerySet | None = None):
    """``FingerprintRecord`` of every active flag in ``queryset`` (default: all), oldest first."""
    rows = FlaggedFingerprint.objects.all() if queryset is None else queryset
    rows = rows.active().select_related("hash_list").prefetch_related("variants")
    for flagged in rows.order_by("flagged_at", "pk").iterator(chunk_size=2000):
        hash_list = flagged.hash_list
        yield FingerprintRecord(
            dhash=flagged.hex,
            list=hash_list.name,
            reason=flagged.reason,
            source=flagged.source,
            created=flagged.flagged_at.isoformat(),
            pipeline_version=flagged.pipeline_version,
            information=flagged.information,
            variants=tuple(
                (v.variant, _hex(v.dhash), _hex(v.phash)) for v in flagged.variants.all()
            ),
            list_max_distance=hash_list.max_distance,
            list_enabled=hash_list.enabled,
            list_mode=hash_list.mode,
            verification=base64.b64encode(bytes(flagged.verification or b"")).decode("ascii"),
        )


def import_fingerprint(
    *, record: FingerprintRecord, actor: AbstractBaseUser | None = None, dry_run: bool = False
) -> bool:
    """Add one exported banned image to the banned set. Returns False when its upright hash is
    already actively banned (so re-importing a file changes nothing).

    A list named in the record is created with the record's distance, switch and mode; an
    existing list keeps its own settings. Call inside ``transaction.atomic()``; the sweep of
    the new flags runs after commit. ``dry_run`` checks and writes nothing.
    """
    upright = Fingerprint.from_hex(record.dhash)
    variants = [
        (
            number,
            Fingerprint.from_hex(d).signed,
            None if p is None else Fingerprint.from_hex(p).signed,
        )
        for number, d, p in record.variants
    ]
    if not variants or variants[0][:2] != (0, upright.signed):
        raise ValidationError(f"{record.dhash}: the first variant must be the upright dHash")
    numbers = [number for number, _, _ in variants]
    if len(set(numbers)) != len(numbers) or not all(0 <= n < len(VARIANTS) for n in numbers):
        # A variant this site does not know (an export from a newer version) has no index key.
        raise ValidationError(
            f"{record.dhash}: variants must be distinct numbers 0-{len(VARIANTS) - 1}, "
            f"got {numbers}"
        )
    created_at = datetime.fromisoformat(record.created)
    if record.source not in FlaggedFingerprint.Source.values:
        raise ValidationError(f"{record.dhash}: unknown source {record.source!r}")
    if record.list_mode not in HashList.Mode.values:
        raise ValidationError(f"{record.dhash}: unknown list mode {record.list_mode!r}")
    try:
        signal = base64.b64decode(record.verification, validate=True)
        if signal:
            unpack(signal)
    except (binascii.Error, ValueError) as e:
        raise ValidationError(f"{record.dhash}: the verification signal is not valid: {e}") from e
    if dry_run:
        return not FlaggedFingerprint.objects.active().filter(dhash=upright.signed).exists()
    lock_banned_set()
    if FlaggedFingerprint.objects.active().filter(dhash=upright.signed).exists():
        return False
    hash_list, _created = HashList.objects.get_or_create(
        name=record.list,
        defaults={
            "max_distance": record.list_max_distance,
            "enabled": record.list_enabled,
            "mode": record.list_mode,
        },
    )
    flagged = FlaggedFingerprint.objects.create(
        dhash=upright.signed,
        hash_list=hash_list,
        pipeline_version=record.pipeline_version,
        information=record.information,
        reason=record.reason,
        source=record.source,
        flagged_by=actor,
        flagged_at=created_at,
        verification=signal,
    )
    FingerprintVariant.objects.bulk_create(
        FingerprintVariant(flagged=flagged, variant=number, dhash=d, phash=p)
        for number, d, p in variants
    )
    log_change(flagged)
    AuditEvent.objects.create(
        action=AuditEvent.Action.FLAG,
        actor=actor,
        fingerprint=flagged,
        reason=f"imported into list {hash_list.name}: {record.reason}".strip(),
    )
    sweep_after_commit([flagged.pk])
    return True


# --- flags decided by the rule alone ------------------------------------------------------

# How often the dHash + pHash rule alone (no verification) matched an innocent upload with a
# flag of another picture, per (upload, flag) pair: benchmarks/false_matches.py on the 72
# corpus photos before verification existed (docs/matching.md, "False matches at scale"). A
# flag without a verification signal (a list of bare hashes) is decided by that rule alone.
RULE_ALONE_PAIR_RATE = 3.0e-5
# ``import_fingerprints`` warns when the enforced flags without a signal would, at that rate,
# refuse at least this share of ordinary uploads.
WARN_AT_SHARE = 0.01


def unverified_enforced_flags() -> int:
    """Active flags without a verification signal in lists that are on and enforcing: the
    ones whose matches refuse an upload on the dHash + pHash rule alone."""
    return (
        FlaggedFingerprint.objects.active()
        .filter(verification=b"", hash_list__enabled=True, hash_list__mode=HashList.Mode.ENFORCE)
        .count()
    )


def share_refused_by_rule_alone(flags: int) -> float:
    """The share of ordinary uploads ``flags`` such flags would refuse at the measured rate
    (``false_matches.share_refused``: collisions taken as independent, an estimate)."""
    from moderation.false_matches import share_refused  # the benchmark's module: numpy, PIL

    return share_refused(RULE_ALONE_PAIR_RATE, flags)


# --- the file formats ---------------------------------------------------------------------

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
                    verification=row.get("verification") or "",
                )
            except KeyError as e:
                raise ValueError(f"line {line}: the record has no {e} field") from e
            except (TypeError, ValueError) as e:
                raise ValueError(f"line {line}: {e}") from e
    elif fmt == "jsonl":
        for line, text in enumerate(source, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
                row["variants"] = tuple(tuple(v) for v in row["variants"])
                yield FingerprintRecord(**{k: v for k, v in row.items() if k in FIELDS})
            except KeyError as e:
                raise ValueError(f"line {line}: the record has no {e} field") from e
            except (TypeError, ValueError) as e:
                raise ValueError(f"line {line}: {e}") from e
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def guess_format(name: str) -> str:
    return "csv" if name.lower().endswith(".csv") else "jsonl"
