"""Every sweep's state, as the desk sees it: created queued with its flag, running with each
attempt counted at once, done with its counts, failed with its error (and re-raised), retried;
and the reindex run's progress for the operator (``reindex --status``, admin, dashboard).
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from moderation import reindex, sweeping
from moderation.models import AuditEvent, FlaggedFingerprint, Sweep, WorkRange
from moderation.sweeping import sweep_task
from tests import images
from tests.admin_pages import messages_of, run_action
from tests.helpers import flag_file, run_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def copy_and_scene(make_profile):
    """A stored resized copy of a scene (to be taken down) and the scene itself."""
    scene = images.photo(51)
    copy = make_profile("bob", images.resized(scene, 0.7))
    return copy, scene


def page(client, name: str, *args) -> str:
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_a_flag_creates_its_sweep_queued_in_its_own_transaction(copy_and_scene):
    _, scene = copy_and_scene

    with pytest.raises(RuntimeError), transaction.atomic():
        flag_file(scene)
        assert Sweep.objects.count() == 1
        raise RuntimeError("rolled back")
    assert not Sweep.objects.exists()

    # Its task runs on commit, which this test never reaches.
    flagged = flag_file(scene).fingerprint

    sweep = Sweep.objects.get()
    assert (sweep.state, sweep.attempts, sweep.full) == ("queued", 0, False)
    assert list(sweep.fingerprints.all()) == [flagged]


def test_the_sweep_task_records_done_with_its_counts(
    copy_and_scene, django_capture_on_commit_callbacks
):
    copy, scene = copy_and_scene

    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(scene).fingerprint

    sweep = flagged.sweeps.get()
    assert (sweep.state, sweep.attempts, sweep.checked, sweep.taken_down) == ("done", 1, 1, 1)
    assert sweep.started_at <= sweep.finished_at
    copy.refresh_from_db()
    assert not copy.photo


def test_a_sweep_that_raises_is_failed_with_its_error_then_a_retry_finishes_it(
    copy_and_scene, monkeypatch
):
    copy, scene = copy_and_scene
    flagged = flag_file(scene).fingerprint
    sweep = flagged.sweeps.get()
    real = sweeping.sweep_banned_matches
    monkeypatch.setattr(
        sweeping,
        "sweep_banned_matches",
        lambda **kw: (_ for _ in ()).throw(ConnectionError("database went away")),
    )

    with pytest.raises(ConnectionError):
        sweep_task.call(sweep_id=sweep.pk)

    sweep.refresh_from_db()
    assert (sweep.state, sweep.attempts) == ("failed", 1)
    assert sweep.last_error == "ConnectionError: database went away"
    monkeypatch.setattr(sweeping, "sweep_banned_matches", real)

    result = sweep_task.call(sweep_id=sweep.pk)  # the retry

    sweep.refresh_from_db()
    assert (sweep.state, sweep.attempts, sweep.taken_down) == ("done", 2, 1)
    assert result["taken_down"] == 1
    assert sweep.last_error  # kept: the desk sees it was retried after a failure


def test_a_sweep_whose_worker_died_runs_again_without_a_second_takedown(copy_and_scene):
    copy, scene = copy_and_scene
    flagged = flag_file(scene).fingerprint
    sweep = flagged.sweeps.get()
    # The first attempt counted itself and took the copy down, then its worker died.
    Sweep.objects.filter(pk=sweep.pk).update(state="running", attempts=1)
    sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk])
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).count() == 1

    sweep_task.call(sweep_id=sweep.pk)

    sweep.refresh_from_db()
    assert (sweep.state, sweep.attempts, sweep.taken_down) == ("done", 2, 0)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).count() == 1


def test_a_finished_sweep_is_not_run_again(copy_and_scene, django_capture_on_commit_callbacks):
    _, scene = copy_and_scene
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(scene).fingerprint
    sweep = flagged.sweeps.get()

    result = sweep_task.call(sweep_id=sweep.pk)

    sweep.refresh_from_db()
    assert result["note"] == "already done"
    assert (sweep.attempts, sweep.taken_down) == (1, 1)


def test_a_sweep_queued_under_the_old_signature_gets_its_row_and_runs(copy_and_scene):
    copy, scene = copy_and_scene
    flagged = flag_file(scene).fingerprint
    flagged.sweeps.all().delete()  # as queued by the previous release: no row

    result = sweep_task.call(fingerprint_ids=[flagged.pk])

    sweep = Sweep.objects.get()
    assert list(sweep.fingerprints.all()) == [flagged]
    assert (sweep.state, sweep.taken_down, result["taken_down"]) == ("done", 1, 1)


# --- the desk ---------------------------------------------------------------------------


def test_the_flag_page_and_list_show_its_sweep_queued_failed_retried_and_done(
    copy_and_scene, moderator_client, monkeypatch
):
    _, scene = copy_and_scene
    flagged = flag_file(scene).fingerprint
    change = ("admin:moderation_flaggedfingerprint_change", flagged.pk)
    listing = "admin:moderation_flaggedfingerprint_changelist"
    assert re.search(
        r"Sweep of stored photos:</label>\s*<div[^>]*>queued<", page(moderator_client, *change)
    )
    assert re.search(r'<td class="field-sweep_state">queued</td>', page(moderator_client, listing))

    monkeypatch.setattr(
        sweeping,
        "sweep_banned_matches",
        lambda **kw: (_ for _ in ()).throw(OSError("storage timed out")),
    )
    with pytest.raises(OSError):
        sweep_task.call(sweep_id=flagged.sweeps.get().pk)
    failed = "failed after 1 attempt(s): OSError: storage timed out"
    assert failed in page(moderator_client, *change)
    assert failed in page(moderator_client, listing)
    monkeypatch.undo()

    sweep_task.call(sweep_id=flagged.sweeps.get().pk)

    done = (
        "done: checked 1, took down 1, queued 0 for review "
        "(retried after a failure: OSError: storage timed out)"
    )
    assert done in page(moderator_client, *change)
    assert done in page(moderator_client, listing)
    assert "being taken down" not in page(moderator_client, *change)


def test_the_flag_image_page_says_the_sweep_state_not_a_promise(moderator_client):
    response = moderator_client.post(
        reverse("admin:moderation_flaggedfingerprint_flag_image"),
        {"image": images.upload(images.photo(52), "x.png", "PNG"), "reason": "known bad"},
        follow=True,
    )

    flagged = FlaggedFingerprint.objects.get()
    messages = [str(m) for m in response.context["messages"]]
    # The test's transaction never commits, so the sweep is still queued: said as it is.
    assert messages == [f"Flagged {flagged.hex}. Sweep of stored photos: 1 queued."]


# --- the operator -----------------------------------------------------------------------


@pytest.fixture
def half_done_run(make_profile, settings):
    """An open run: 4 photos in ranges of 2, the first range done."""
    for i in range(4):
        make_profile(f"p{i}", images.photo(60 + i))
    settings.MODERATION_REINDEX_RANGE_SIZE = 2
    run, _ = reindex.reindex_open_run(batch_size=2)
    first = run.ranges.order_by("pk").first()
    first.started_at = first.started_at or run.started_at
    first.save()
    list(reindex.work_reindex_range(first, batch_size=2))
    reindex.finish_range(first, enqueue=False)
    run.refresh_from_db()
    return run


def test_reindex_status_shows_ranges_and_rows_done_rate_and_eta(half_done_run):
    out = run_command("reindex", "--status")

    assert f"Reindex run #{half_done_run.pk}" in out and "re-fingerprinting" in out
    assert "reindex: 1/2 ranges, 2/4 rows, " in out
    assert " rows/s, ETA " in out


def test_reindex_status_before_any_run_and_after_the_last():
    assert run_command("reindex", "--status").strip() == "No reindex has run yet."


def test_reindex_status_of_a_finished_run_gives_its_summary(make_profile):
    make_profile("p", images.photo(70))
    run_command("reindex")

    out = run_command("reindex", "--status")

    assert "finished" in out
    assert "Re-fingerprinted 1 of 1 image(s): 0 changed" in out
    assert "sweep checked 1, took down 0" in out


def test_the_admin_shows_the_current_runs_progress_and_the_dashboard_a_running_reindex(
    half_done_run, moderator_client
):
    run_page = page(moderator_client, "admin:moderation_reindexrun_change", half_done_run.pk)
    assert "1/2 ranges, 2/4 rows" in run_page
    assert "rows/s" in run_page

    dashboard = page(moderator_client, "admin:moderation_dashboard")
    assert "Reindex running" in dashboard
    assert "1/2 ranges, 2/4 rows" in dashboard


def test_the_dashboard_shows_no_reindex_when_none_is_running(moderator_client):
    assert "Reindex running" not in page(moderator_client, "admin:moderation_dashboard")


def test_a_failed_sweep_is_counted_on_the_dashboard_and_run_again_from_the_admin(
    copy_and_scene, moderator_client, monkeypatch, django_capture_on_commit_callbacks
):
    copy, scene = copy_and_scene
    flagged = flag_file(scene).fingerprint
    sweep = flagged.sweeps.get()
    monkeypatch.setattr(
        sweeping,
        "sweep_banned_matches",
        lambda **kw: (_ for _ in ()).throw(OSError("storage timed out")),
    )
    with pytest.raises(OSError):
        sweep_task.call(sweep_id=sweep.pk)
    monkeypatch.undo()
    assert "1 sweep failed" in page(moderator_client, "admin:moderation_dashboard")

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(
            moderator_client, "admin:moderation_sweep_changelist", "run_again", [sweep]
        )

    assert messages_of(response) == ["1 sweep enqueued again."]
    sweep.refresh_from_db()
    assert (sweep.state, sweep.attempts, sweep.taken_down) == ("done", 2, 1)
    copy.refresh_from_db()
    assert not copy.photo
    assert "0 sweeps failed" in page(moderator_client, "admin:moderation_dashboard")


def test_a_full_sweep_in_progress_shows_how_far_it_is_in_the_admin(admin_client):
    sweep = Sweep.objects.create(full=True, state=Sweep.State.RUNNING, attempts=1)
    started = timezone.now() - timedelta(seconds=10)
    WorkRange.objects.create(
        sweep=sweep,
        kind="profiles.profile",
        lo=1,
        hi=300,
        rows=300,
        done=True,
        processed=300,
        started_at=started,
        finished_at=timezone.now(),
    )
    WorkRange.objects.create(
        sweep=sweep,
        kind="profiles.profile",
        lo=301,
        hi=600,
        rows=300,
        processed=100,
        started_at=started,
    )

    page = admin_client.get(reverse("admin:moderation_sweep_changelist")).content.decode()

    assert "1/2 ranges, 400/600 rows, " in page
    assert "running, attempt 1" in page
