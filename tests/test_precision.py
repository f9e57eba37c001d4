"""Each flag's record: what it matched, how people judged it, its precision (right over judged)
and its rating; the flags listed for re-review, and keeping one after a re-review."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from moderation import desk, flagging, precision
from moderation.models import (
    Appeal,
    AuditEvent,
    FlaggedFingerprint,
    HashList,
    RefusedUpload,
    ReviewItem,
    SignalEntry,
)
from tests import images
from tests.helpers import ban
from tests.record_scenes import queue_near_miss

pytestmark = pytest.mark.django_db


def test_a_flag_record_counts_its_matches_and_how_they_were_judged(poor_flag):
    record = precision.record_of(poor_flag.flagged)

    assert (record.taken_down, record.refused, record.queued) == (3, 1, 3)
    assert record.matched == 7
    assert (record.upheld, record.overturned, record.banned, record.dismissed) == (1, 2, 0, 3)
    assert (record.right, record.wrong, record.judged) == (1, 5, 6)
    assert record.precision == pytest.approx(1 / 6)
    assert record.percent == "16 %"
    assert record.rating == precision.POOR
    assert record.summary == "16 % (1 of 6 judged right): poor"
    outcomes = Appeal.objects.outcomes_by_flag()[poor_flag.flagged.pk]
    assert outcomes == {"upheld": record.upheld, "overturned": record.overturned}


def test_a_flag_with_too_few_judged_decisions_is_not_enough_data(quiet_flag):
    record = precision.record_of(quiet_flag)

    assert (record.right, record.wrong, record.judged) == (1, 1, 2)
    assert record.precision == pytest.approx(0.5)
    assert record.rating == precision.NOT_ENOUGH
    assert record.summary == "not enough data (2 judged)"
    assert quiet_flag not in precision.to_rereview(FlaggedFingerprint.objects.all())


def test_a_flag_nobody_judged_has_no_precision():
    flagged = ban(images.photo(1703), keep_original=False)
    queue_near_miss(flagged, 0)  # pending: queued, not judged

    record = precision.record_of(flagged)

    assert (record.queued, record.judged, record.precision) == (1, 0, None)
    assert (record.percent, record.rating) == ("—", precision.NOT_ENOUGH)


def test_the_poor_flag_is_listed_for_re_review(poor_flag, quiet_flag):
    listed = list(precision.to_rereview(FlaggedFingerprint.objects.all()))

    assert listed == [poor_flag.flagged]
    assert listed[0].record_rating == precision.POOR


def test_held_uploads_filed_under_a_flag_are_not_its_matches(quiet_flag):
    queue_near_miss(
        quiet_flag, 30, status=ReviewItem.Status.DISMISSED, found_by=ReviewItem.FoundBy.HELD
    )
    queue_near_miss(
        quiet_flag, 31, status=ReviewItem.Status.BANNED, found_by=ReviewItem.FoundBy.HELD
    )

    record = precision.record_of(quiet_flag)

    assert (record.queued, record.banned, record.dismissed) == (1, 0, 1)


def test_a_moderators_own_takedown_is_the_flag_not_one_of_its_matches(make_profile, moderator):
    profile = make_profile("eve", images.photo(1704))
    flagged = flagging.flag_stored_image(instance=profile, reason="x", actor=moderator).fingerprint

    assert AuditEvent.objects.filter(fingerprint=flagged, action="takedown").count() == 1
    assert precision.record_of(flagged).taken_down == 0


def test_near_misses_banned_are_judged_right(quiet_flag):
    for n in range(40, 45):
        queue_near_miss(quiet_flag, n, status=ReviewItem.Status.BANNED)

    record = precision.record_of(quiet_flag)

    assert (record.right, record.wrong, record.judged) == (6, 1, 7)
    assert record.rating == precision.OK and record.percent == "85 %"


def test_the_threshold_and_the_minimum_are_settings(poor_flag, settings):
    settings.MODERATION_PRECISION_POOR_BELOW = 16  # 16.7 % is not below 16 %
    assert precision.record_of(poor_flag.flagged).rating == precision.OK
    settings.MODERATION_PRECISION_POOR_BELOW = 17
    assert precision.record_of(poor_flag.flagged).rating == precision.POOR
    settings.MODERATION_PRECISION_MIN_JUDGED = 7
    assert precision.record_of(poor_flag.flagged).rating == precision.NOT_ENOUGH
    settings.MODERATION_PRECISION_MIN_JUDGED = 6
    settings.MODERATION_PRECISION_POOR_BELOW = 0  # 0 rates no flag poor
    assert precision.record_of(poor_flag.flagged).rating == precision.OK


def test_only_a_flag_with_a_wrong_decision_can_be_poor_even_at_100_percent(quiet_flag, settings):
    settings.MODERATION_PRECISION_POOR_BELOW = 100
    settings.MODERATION_PRECISION_MIN_JUDGED = 1
    flawless = ban(images.photo(1707), keep_original=False)
    for n in range(2):
        queue_near_miss(flawless, n, status=ReviewItem.Status.BANNED)

    rated = {f: f.record_rating for f in precision.with_record(FlaggedFingerprint.objects.all())}

    assert rated == {quiet_flag: precision.POOR, flawless: precision.OK}
    assert list(precision.poor(FlaggedFingerprint.objects.all())) == [quiet_flag]


# --- re-review ---------------------------------------------------------------------------------


def test_keeping_a_flag_after_re_review_is_audited_and_takes_it_off_the_list(poor_flag, moderator):
    flagged = poor_flag.flagged

    assert desk.flag_rereview(flagged=flagged, actor=moderator, reason="checked the originals")

    assert (flagged.rereviewed_by, flagged.active) == (moderator, True)
    event = AuditEvent.objects.get(action=AuditEvent.Action.REREVIEW)
    assert (event.actor, event.fingerprint) == (moderator, flagged)
    assert event.reason == "checked the originals (record: 16 % (1 of 6 judged right): poor)"
    assert list(precision.to_rereview(FlaggedFingerprint.objects.all())) == []


def test_a_kept_flag_is_listed_again_when_another_decision_is_judged(
    poor_flag, moderator, settings
):
    settings.MODERATION_MAX_DISMISSALS = 0  # a sixth dismissal would suspend it otherwise
    flagged = poor_flag.flagged
    desk.flag_rereview(flagged=flagged, actor=moderator, reason="checked")
    queue_near_miss(flagged, 50)  # queued, not judged yet: still off the list
    assert list(precision.to_rereview(FlaggedFingerprint.objects.all())) == []

    desk.review_dismiss(item=ReviewItem.objects.pending().get(), actor=moderator)

    assert list(precision.to_rereview(FlaggedFingerprint.objects.all())) == [flagged]


def test_keeping_a_flag_needs_a_reason_and_writes_nothing_without_one(poor_flag, moderator):
    with pytest.raises(ValidationError):
        desk.flag_rereview(flagged=poor_flag.flagged, actor=moderator, reason="  ")

    poor_flag.flagged.refresh_from_db()
    assert poor_flag.flagged.rereviewed_at is None
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.REREVIEW).exists()


def test_an_unflagged_flag_is_not_kept_nor_listed(poor_flag, moderator):
    flagging.unflag_fingerprint(flagged=poor_flag.flagged, actor=moderator, reason="wrong")

    assert not desk.flag_rereview(flagged=poor_flag.flagged, actor=moderator, reason="keep")
    assert list(precision.to_rereview(FlaggedFingerprint.objects.all())) == []
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.REREVIEW).exists()


# --- hash list entries and lists -------------------------------------------------------------


def test_a_list_entry_record_comes_from_its_matches_and_dismissals():
    entry = SignalEntry.objects.create(
        hash_list=HashList.objects.create(name="partner"),
        signal_type="pdq",
        value="f" * 64,
        times_matched=9,
        times_dismissed=2,
    )
    RefusedUpload.objects.create(code="banned_image", signal_entry=entry)
    for n, status in enumerate(["banned", "banned", "dismissed", "dismissed", "pending"]):
        ReviewItem.objects.create(
            target_key="profiles.profile.photo",
            object_id=n,
            file_name=f"photos/{n}.jpg",
            dhash=n,
            signal_entry=entry,
            distance=0,
            status=status,
        )

    record = precision.entry_record_of(entry)

    assert (record.matched, record.refused, record.queued) == (9, 1, 5)
    assert (record.banned, record.dismissed, record.judged) == (2, 2, 4)
    assert record.rating == precision.NOT_ENOUGH and record.percent == "50 %"


def test_a_list_record_pools_its_flags_and_entries_and_rates_each_flag(poor_flag, quiet_flag):
    hash_list = poor_flag.flagged.hash_list
    entry = SignalEntry.objects.create(
        hash_list=hash_list, signal_type="md5", value="a" * 32, times_matched=3, times_dismissed=1
    )
    ReviewItem.objects.create(
        target_key="profiles.profile.photo",
        object_id=99,
        file_name="photos/99.jpg",
        dhash=0,
        signal_entry=entry,
        distance=0,
        status=ReviewItem.Status.BANNED,
    )
    ban(images.photo(1708), keep_original=False)  # in the list, never judged

    summary = precision.list_record(hash_list)

    assert (summary.flags_poor, summary.flags_ok, summary.flags_not_enough) == (1, 0, 2)
    assert (summary.flags.taken_down, summary.flags.refused, summary.flags.queued) == (4, 1, 4)
    assert (summary.flags.right, summary.flags.wrong, summary.flags.judged) == (2, 6, 8)
    assert summary.flags.rating == precision.POOR and summary.flags.percent == "25 %"
    assert (summary.entries.matched, summary.entries.queued) == (3, 1)
    assert (summary.entries.right, summary.entries.wrong) == (1, 1)
