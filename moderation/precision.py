"""Each flag's record, and each hash list entry's: what it matched, how people judged those
matches, and the precision that follows. Reads only (annotations and aggregates), no writes.

What a flag matched (its decisions):

- **taken down**: stored photos its sweeps and rechecks took down (``AuditEvent`` "takedown"
  with no actor; the photo a moderator flagged is the flag itself, not one of its matches);
- **refused**: uploads it refused (``RefusedUpload`` "banned_image" nearest it);
- **queued**: near misses it put in the review queue (``ReviewItem`` under it, not counting
  uploads held because their uploader was escalated as a prober: those are filed under a flag,
  not matched by it).

Which of those a person judged, and how:

- **right**: an appeal upheld (the takedown or refusal stands), a queued near miss banned;
- **wrong**: an appeal overturned, a queued near miss dismissed.

    precision = right / (right + wrong)        (judged decisions only)

Decisions nobody judged count neither way. Silence is no evidence: most people never appeal,
and someone probing the matcher never will, so counting unchallenged takedowns as right would
make every flag look good. An open appeal is not judged yet. The precision is rated only once
``MODERATION_PRECISION_MIN_JUDGED`` decisions were judged ("not enough data" before that: with
two judged decisions one mistake is 50 %); it is **poor** below
``MODERATION_PRECISION_POOR_BELOW`` percent, **ok** otherwise. An active poor flag is listed
for re-review until a moderator marks it re-reviewed (``desk.flag_rereview``), and again once a
decision about one of its matches is judged after that.

A hash list's PDQ, MD5 and SHA-256 entries have the same record, from what they keep: how often
they matched (``SignalEntry.times_matched``: every upload that matched, blocked or queued), the
uploads they refused, the near misses they queued, which of those were banned (right) and how
often their matches were dismissed (``times_dismissed``, wrong). A list entry's refusal gives no
notice (it names no flag), so entries have no appeals.

Every count is a correlated subquery in the one query that lists the flags, so a changelist
page costs the same number of queries whatever its rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, NullIf
from django.db.models.lookups import LessThan
from django.utils.translation import gettext_lazy as _

from moderation.conf import moderation_settings
from moderation.models import (
    Appeal,
    AuditEvent,
    FlaggedFingerprint,
    HashList,
    RefusedUpload,
    ReviewItem,
    SignalEntry,
)

POOR = "poor"
OK = "ok"
NOT_ENOUGH = "not_enough"
RATINGS = {
    POOR: _("poor"),
    OK: _("ok"),
    NOT_ENOUGH: _("not enough data"),
}


def _count(queryset: QuerySet, column: str) -> Coalesce:
    """The number of ``queryset``'s rows (correlated on ``column``), 0 when there are none."""
    return Coalesce(
        Subquery(
            queryset.order_by().values(column).annotate(n=Count("pk")).values("n"),
            output_field=IntegerField(),
        ),
        0,
    )


def _near_misses_of_any_flag() -> QuerySet:
    """Queued near misses: every review item under a flag but held uploads."""
    return ReviewItem.objects.filter(fingerprint__isnull=False).exclude(
        found_by=ReviewItem.FoundBy.HELD
    )


def _near_misses() -> QuerySet:
    """A flag's queued near misses (correlated with the flag of the outer query)."""
    return _near_misses_of_any_flag().filter(fingerprint=OuterRef("pk"))


def _appeals(status: str) -> QuerySet:
    return Appeal.objects.filter(notice__fingerprint=OuterRef("pk"), status=status)


def _rated(queryset: QuerySet, judged_any: Q) -> QuerySet:
    """Add ``record_judged``, ``record_precision`` (0-1, None before any judged decision) and
    ``record_rating`` to a queryset annotated with ``record_right`` and ``record_wrong``.

    ``judged_any`` says which rows have a judged decision at all, from the few decision rows
    (one hashed set for the whole query): precision and rating count a row's decisions only
    for those. Sorting or filtering every flag by precision then runs the counting subqueries
    for the flags that were ever judged, not for every flag (``benchmarks/flag_list_sort.py``).
    """
    min_judged = moderation_settings.PRECISION_MIN_JUDGED
    poor_below = moderation_settings.PRECISION_POOR_BELOW
    return queryset.annotate(
        record_judged=F("record_right") + F("record_wrong"),
    ).annotate(
        record_precision=Case(
            When(
                judged_any,
                then=Cast("record_right", FloatField())
                / NullIf(Cast("record_judged", FloatField()), 0.0),
            ),
            default=None,
            output_field=FloatField(),
        ),
        # In integers: right / judged < poor_below % is right * 100 < poor_below * judged.
        record_rating=Case(
            When(~judged_any, then=Value(NOT_ENOUGH)),
            When(record_judged__lt=min_judged, then=Value(NOT_ENOUGH)),
            When(
                LessThan(F("record_right") * 100, F("record_judged") * poor_below),
                then=Value(POOR),
            ),
            default=Value(OK),
        ),
    )


def _flags_judged() -> Q:
    """Flags with a judged decision: a near miss banned or dismissed, an appeal decided."""
    near = _near_misses_of_any_flag().filter(
        status__in=[ReviewItem.Status.BANNED, ReviewItem.Status.DISMISSED]
    )
    appeals = Appeal.objects.filter(
        notice__fingerprint__isnull=False,
        status__in=[Appeal.Status.UPHELD, Appeal.Status.OVERTURNED],
    )
    return Q(pk__in=near.values("fingerprint")) | Q(pk__in=appeals.values("notice__fingerprint"))


def with_record(flags: QuerySet[FlaggedFingerprint]) -> QuerySet[FlaggedFingerprint]:
    """``flags`` annotated with their record: ``record_taken_down``, ``record_refused``,
    ``record_queued``, ``record_matched`` (their sum), ``record_banned`` and
    ``record_dismissed`` (near misses judged), ``record_upheld``, ``record_overturned`` and
    ``record_appeals_open``, then ``record_right``, ``record_wrong``, ``record_judged``,
    ``record_precision`` and ``record_rating`` (``POOR``, ``OK`` or ``NOT_ENOUGH``)."""
    near = _near_misses()
    return _rated(
        flags.annotate(
            record_taken_down=_count(
                AuditEvent.objects.filter(
                    fingerprint=OuterRef("pk"),
                    action=AuditEvent.Action.TAKEDOWN,
                    actor__isnull=True,
                ),
                "fingerprint",
            ),
            record_refused=_count(
                RefusedUpload.objects.banned_matches().filter(nearest=OuterRef("pk")), "nearest"
            ),
            record_queued=_count(near, "fingerprint"),
            record_banned=_count(near.filter(status=ReviewItem.Status.BANNED), "fingerprint"),
            record_dismissed=_count(near.filter(status=ReviewItem.Status.DISMISSED), "fingerprint"),
            record_upheld=_count(_appeals(Appeal.Status.UPHELD), "notice__fingerprint"),
            record_overturned=_count(_appeals(Appeal.Status.OVERTURNED), "notice__fingerprint"),
            record_appeals_open=_count(_appeals(Appeal.Status.OPEN), "notice__fingerprint"),
        ).annotate(
            record_matched=F("record_taken_down") + F("record_refused") + F("record_queued"),
            record_right=F("record_upheld") + F("record_banned"),
            record_wrong=F("record_overturned") + F("record_dismissed"),
        ),
        _flags_judged(),
    )


def with_a_wrong_decision(flags: QuerySet[FlaggedFingerprint]) -> QuerySet[FlaggedFingerprint]:
    """The flags among ``flags`` with at least one decision judged wrong: the only ones that
    can be poor (with none, right = judged, and no threshold up to 100 % is above that). Found
    from the small tables (dismissed near misses, overturned appeals), so the dashboard and the
    "poor" filter compute records for those flags only, not for a whole large banned set."""
    dismissed = (
        _near_misses_of_any_flag()
        .filter(status=ReviewItem.Status.DISMISSED)
        .order_by()
        .values("fingerprint")
    )
    overturned = (
        Appeal.objects.filter(status=Appeal.Status.OVERTURNED)
        .order_by()
        .values("notice__fingerprint")
    )
    # One IN over a UNION (not two ORed): the database plans it as a join with the few flags
    # it yields, and estimates the records' cost on those only.
    return flags.filter(pk__in=dismissed.union(overturned))


def poor(flags: QuerySet[FlaggedFingerprint]) -> QuerySet[FlaggedFingerprint]:
    """The flags among ``flags`` whose precision is poor (with their record)."""
    if "record_rating" not in flags.query.annotations:  # the admin's list has them already
        flags = with_record(flags)
    return with_a_wrong_decision(flags).filter(record_rating=POOR)


def to_rereview(flags: QuerySet[FlaggedFingerprint]) -> QuerySet[FlaggedFingerprint]:
    """The active flags among ``flags`` whose precision is poor and that nobody re-reviewed
    since the last of their decisions was judged, worst first (with their record)."""
    judged_since = Q(decided_at__gt=OuterRef("rereviewed_at"))
    appeals_since = Appeal.objects.filter(
        judged_since,
        notice__fingerprint=OuterRef("pk"),
        status__in=[Appeal.Status.UPHELD, Appeal.Status.OVERTURNED],
    )
    near_since = _near_misses().filter(
        judged_since, status__in=[ReviewItem.Status.BANNED, ReviewItem.Status.DISMISSED]
    )
    return (
        poor(flags.filter(active=True))
        .annotate(
            record_judged_since=_count(appeals_since, "notice__fingerprint")
            + _count(near_since, "fingerprint")
        )
        .filter(Q(rereviewed_at__isnull=True) | Q(record_judged_since__gt=0))
        .order_by("record_precision", "-record_judged", "pk")
    )


def entries_with_record(entries: QuerySet[SignalEntry]) -> QuerySet[SignalEntry]:
    """``entries`` annotated as flags are, from what an entry keeps: ``record_matched``
    (``times_matched``), ``record_refused``, ``record_queued``, ``record_banned`` (right),
    ``record_dismissed`` (``times_dismissed``, wrong), then the judged count, precision and
    rating."""
    queued = ReviewItem.objects.filter(signal_entry=OuterRef("pk"))
    return _rated(
        entries.annotate(
            record_matched=F("times_matched"),
            record_refused=_count(
                RefusedUpload.objects.banned_matches().filter(signal_entry=OuterRef("pk")),
                "signal_entry",
            ),
            record_queued=_count(queued, "signal_entry"),
            record_banned=_count(queued.filter(status=ReviewItem.Status.BANNED), "signal_entry"),
            record_dismissed=F("times_dismissed"),
        ).annotate(
            record_right=F("record_banned"),
            record_wrong=F("record_dismissed"),
        ),
        Q(times_dismissed__gt=0)
        | Q(
            pk__in=ReviewItem.objects.filter(
                signal_entry__isnull=False, status=ReviewItem.Status.BANNED
            ).values("signal_entry")
        ),
    )


@dataclass(frozen=True)
class Record:
    """One flag's (or entry's, or a list's pooled) record, as the admin shows it."""

    matched: int
    taken_down: int
    refused: int
    queued: int
    banned: int
    dismissed: int
    upheld: int
    overturned: int
    appeals_open: int
    right: int
    wrong: int
    judged: int
    precision: float | None
    rating: str

    @classmethod
    def of(cls, row) -> Record:
        """From a row annotated by ``with_record`` or ``entries_with_record`` (an entry has no
        takedowns or appeals: 0)."""
        return cls(
            **{
                name: getattr(row, f"record_{name}", 0)
                for name in cls.__dataclass_fields__
                if name != "rating"
            },
            rating=row.record_rating,
        )

    @property
    def rating_label(self) -> str:
        return str(RATINGS[self.rating])

    @property
    def percent(self) -> str:
        """The precision as a whole percent, e.g. "17 %", rounded down (so a poor flag never
        shows its threshold); "—" before any judged decision."""
        if self.precision is None:
            return "—"
        return f"{int(self.precision * 100 + 1e-9)} %"

    @property
    def summary(self) -> str:
        """One line, e.g. "17 % (1 of 6 judged right): poor" or "not enough data (2 judged)"."""
        if self.rating == NOT_ENOUGH:
            return str(_("not enough data (%(n)d judged)") % {"n": self.judged})
        return str(
            _("%(percent)s (%(right)d of %(judged)d judged right): %(rating)s")
            % {
                "percent": self.percent,
                "right": self.right,
                "judged": self.judged,
                "rating": self.rating_label,
            }
        )


def record_of(flagged: FlaggedFingerprint) -> Record:
    """The record of one flag (one query)."""
    return Record.of(with_record(FlaggedFingerprint.objects.filter(pk=flagged.pk)).get())


def entry_record_of(entry: SignalEntry) -> Record:
    """The record of one hash list entry (one query)."""
    return Record.of(entries_with_record(SignalEntry.objects.filter(pk=entry.pk)).get())


@dataclass(frozen=True)
class ListRecord:
    """A hash list's summary: its flags' records pooled, how many of its flags are rated
    poor, ok or not enough data, and its entries' records pooled. A pooled precision is all
    right decisions over all judged ones, so a busy flag weighs more than a quiet one."""

    flags: Record
    flags_poor: int
    flags_ok: int
    flags_not_enough: int
    entries: Record


def _pooled(totals: dict[str, int | None]) -> Record:
    values = {name: totals.get(name) or 0 for name in Record.__dataclass_fields__}
    if "matched" not in totals:
        values["matched"] = values["taken_down"] + values["refused"] + values["queued"]
    right = values["upheld"] + values["banned"]
    wrong = values["overturned"] + values["dismissed"]
    judged = right + wrong
    values.update(right=right, wrong=wrong, judged=judged)
    values["precision"] = right / judged if judged else None
    if judged < moderation_settings.PRECISION_MIN_JUDGED:
        values["rating"] = NOT_ENOUGH
    elif right * 100 < moderation_settings.PRECISION_POOR_BELOW * judged:
        values["rating"] = POOR
    else:
        values["rating"] = OK
    return Record(**values)


def _with_a_judged_decision(
    flags: QuerySet[FlaggedFingerprint],
) -> QuerySet[FlaggedFingerprint]:
    """The flags among ``flags`` with at least one judged decision; the others are "not
    enough data" whatever the settings (``MODERATION_PRECISION_MIN_JUDGED`` is at least 1)."""
    near = (
        _near_misses_of_any_flag()
        .filter(status__in=[ReviewItem.Status.BANNED, ReviewItem.Status.DISMISSED])
        .order_by()
        .values("fingerprint")
    )
    appealed = (
        Appeal.objects.filter(status__in=[Appeal.Status.UPHELD, Appeal.Status.OVERTURNED])
        .order_by()
        .values("notice__fingerprint")
    )
    return flags.filter(pk__in=near.union(appealed))


def list_record(hash_list: HashList) -> ListRecord:
    """The summary of one list: each count summed straight from its table (no flag's record
    is computed for that), and the ratings of the flags that have a judged decision (the
    rest are not enough data). A few small queries, whatever the size of the list."""
    flags = FlaggedFingerprint.objects.filter(hash_list=hash_list)
    status = ReviewItem.Status
    near = _near_misses_of_any_flag().filter(fingerprint__hash_list=hash_list)
    appeals = Appeal.objects.filter(notice__fingerprint__hash_list=hash_list)
    totals = {
        "taken_down": AuditEvent.objects.filter(
            fingerprint__hash_list=hash_list,
            action=AuditEvent.Action.TAKEDOWN,
            actor__isnull=True,
        ).count(),
        "refused": RefusedUpload.objects.banned_matches()
        .filter(nearest__hash_list=hash_list)
        .count(),
        **near.aggregate(
            queued=Count("pk"),
            banned=Count("pk", filter=Q(status=status.BANNED)),
            dismissed=Count("pk", filter=Q(status=status.DISMISSED)),
        ),
        **appeals.aggregate(
            upheld=Count("pk", filter=Q(status=Appeal.Status.UPHELD)),
            overturned=Count("pk", filter=Q(status=Appeal.Status.OVERTURNED)),
            appeals_open=Count("pk", filter=Q(status=Appeal.Status.OPEN)),
        ),
    }
    rated = with_record(_with_a_judged_decision(flags)).aggregate(
        poor=Count("pk", filter=Q(record_rating=POOR)),
        ok=Count("pk", filter=Q(record_rating=OK)),
    )
    entries = SignalEntry.objects.filter(hash_list=hash_list)
    queued = ReviewItem.objects.filter(signal_entry__hash_list=hash_list)
    entry_totals = {
        **entries.aggregate(matched=Sum("times_matched"), dismissed=Sum("times_dismissed")),
        "refused": RefusedUpload.objects.banned_matches()
        .filter(signal_entry__hash_list=hash_list)
        .count(),
        **queued.aggregate(queued=Count("pk"), banned=Count("pk", filter=Q(status=status.BANNED))),
    }
    return ListRecord(
        flags=_pooled(totals),
        flags_poor=rated["poor"],
        flags_ok=rated["ok"],
        flags_not_enough=flags.count() - rated["poor"] - rated["ok"],
        entries=_pooled(entry_totals),
    )
