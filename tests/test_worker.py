"""The task worker for real: ``manage.py run_worker`` (the production worker) as a separate process.

The test process and the worker share the test database (PostgreSQL, or SQLite in a file, see
settings) and the test's media and quarantine folders (``tests/processes.py``); both use
``MODERATION_TASKS_BACKEND=database``, so nothing runs in the test process that the worker is
meant to run. Every wait is bounded and a failure shows the worker's output.
"""

from __future__ import annotations

import os
from html.parser import HTMLParser
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from moderation import flagging, reindex
from moderation.background import enqueue_on_commit
from moderation.hashing import PIPELINE_VERSION, fingerprint
from moderation.models import AuditEvent, FlaggedFingerprint, ReindexRun, Sweep
from moderation.reindex import reindex_range_task, reindex_task, sweep_range_task
from moderation.review import review_digest_task
from moderation.sweeping import recheck_image_task, sweep_task
from profiles.models import Profile
from tests import images
from tests.processes import ManageProcess, wait_for

# A flag's sweep, or a small reindex, is done by the worker well within this (it polls every
# 0.1 s); the rest is start-up time of a Django process on a busy machine.
WORKER_TIMEOUT = 30

DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
SUCCESSFUL = "SUCCESSFUL"


@pytest.fixture
def database_tasks(settings):
    """This process enqueues into the database, as production does."""
    settings.TASKS = DATABASE_TASKS


@pytest.fixture
def worker(database_tasks, transactional_db, isolated_storage):
    """``manage.py run_worker`` in its own process; always stopped, its output kept."""
    proc = ManageProcess(
        "run_worker",
        "--no-reload",
        "--no-startup-delay",
        "--interval=0.1",
        f"--worker-id=pytest-{os.getpid()}",
        "--verbosity=2",
        MODERATION_TASKS_BACKEND="database",
    )
    try:
        yield proc
    finally:
        proc.stop()
        # Shown by pytest when the test failed ("Captured stdout teardown").
        print(proc.describe())
        proc.cleanup()


def tasks_of(task, **filters):
    return DBTaskResult.objects.filter(task_path=task.module_path, **filters)


def wait_until_tasks_done(worker, task, *, count: int = 1):
    """Wait until ``count`` results of ``task`` finished; fail if any did not succeed."""

    def finished():
        rows = list(tasks_of(task, finished_at__isnull=False))
        return rows if len(rows) >= count else None

    rows = wait_for(finished, timeout=WORKER_TIMEOUT, what=f"{task.name} to finish", process=worker)
    failed = [r for r in rows if r.status != SUCCESSFUL]
    assert not failed, f"{failed[0].status}: {failed[0].traceback}\n{worker.describe()}"
    return rows


def upload_photo(client, user, img, name="me.jpg"):
    client.force_login(user)
    response = client.post(
        reverse("profile-edit"),
        {"display_name": user.username, "photo": images.upload(img, name)},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    profile = Profile.objects.get(user=user)
    assert profile.photo
    return profile


class _HiddenInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields.setdefault(a["name"], []).append(a.get("value") or "")


def hidden_inputs(html: str) -> dict[str, list[str]]:
    """The hidden fields of a page's forms, as the browser would post them back."""
    parser = _HiddenInputs()
    parser.feed(html)
    return parser.fields


@pytest.mark.worker
def test_flag_in_admin_then_worker_takes_down_the_matching_photo(
    worker, client, moderator, django_user_model, media_files, isolated_storage, settings
):
    alice, bob, carol = (
        django_user_model.objects.create_user(username=name, password=f"pw-{name}-123")
        for name in ("alice", "bob", "carol")
    )
    scene = images.photo(21)
    # Bob's resized copy goes up first: nothing is banned yet, so it is accepted.
    bob_profile = upload_photo(client, bob, images.resized(scene, 0.6), "small.jpg")
    alice_profile = upload_photo(client, alice, scene, "scene.jpg")
    carol_profile = upload_photo(client, carol, images.photo(22), "other.jpg")
    carol_photo, carol_hash = carol_profile.photo.name, carol_profile.photo_dhash
    # Each upload enqueued its re-check on commit; the worker runs them (nothing matches).
    wait_until_tasks_done(worker, recheck_image_task, count=3)
    assert Profile.objects.exclude(photo="").count() == 3

    # The moderator picks Alice's profile, runs the action, and confirms on the page it shows.
    client.force_login(moderator)
    changelist = reverse("admin:profiles_profile_changelist")
    page = client.post(
        changelist, {"action": "flag_selected_photos", "_selected_action": [alice_profile.pk]}
    )
    assert page.status_code == 200
    fields = hidden_inputs(page.content.decode())
    assert fields["confirm"] == ["yes"]
    response = client.post(changelist, {**fields, "reason": "reported scene"})
    assert response.status_code == 302
    flagged = FlaggedFingerprint.objects.get()
    alice_profile.refresh_from_db()
    assert not alice_profile.photo  # taken down by the request itself
    # The retroactive sweep is the worker's job: enqueued on commit, with JSON arguments.
    state = Sweep.objects.get()
    assert list(state.fingerprints.all()) == [flagged]
    sweep = tasks_of(sweep_task).get()
    assert sweep.args_kwargs == {"args": [], "kwargs": {"sweep_id": state.pk}}

    def bob_taken_down():
        bob_profile.refresh_from_db()
        return not bob_profile.photo

    wait_for(bob_taken_down, timeout=WORKER_TIMEOUT, what="Bob's copy taken down", process=worker)
    [sweep] = wait_until_tasks_done(worker, sweep_task)
    assert sweep.worker_ids == [f"pytest-{os.getpid()}"]
    # Only Bob's copy was screened: the index of stored photos finds nothing near Carol's.
    assert sweep.return_value == {
        "sweep": state.pk,
        "state": "done",
        "checked": 1,
        "taken_down": 1,
        "queued": 0,
    }
    state.refresh_from_db()
    assert (state.state, state.attempts, state.checked, state.taken_down) == ("done", 1, 1, 1)

    assert bob_profile.photo_dhash is None
    takedown = AuditEvent.objects.get(
        action=AuditEvent.Action.TAKEDOWN, target__endswith=f"(#{bob_profile.pk})"
    )
    assert takedown.fingerprint == flagged
    assert takedown.actor is None  # the system acted
    assert takedown.distance <= settings.MODERATION_MAX_DISTANCE
    assert takedown.evidence and (isolated_storage / "quarantine" / takedown.evidence.name).exists()

    carol_profile.refresh_from_db()
    assert (carol_profile.photo.name, carol_profile.photo_dhash) == (carol_photo, carol_hash)
    assert not AuditEvent.objects.filter(target__endswith=f"(#{carol_profile.pk})").exists()
    # Public media now holds Carol's photo only (Bob's file was removed after the worker's
    # commit, Alice's after the admin request's).
    assert media_files() == [carol_photo]


def _stale_copy_of_banned_scene(django_user_model, scene):
    """Dave's photo is a copy of ``scene`` whose stored hash is stale (an older pipeline's).

    Written straight to storage and the row, as an old deployment left it: the flag's sweep
    compares stored hashes and cannot see that it matches; only a reindex can.
    """
    dave = django_user_model.objects.create_user(username="dave", password="pw-dave-123")
    content = images.encode(images.resized(scene, 0.7), "JPEG", quality=90)
    real = fingerprint(ContentFile(content))
    stale = real.signed ^ 0x0F0F_0F0F_0F0F  # 24 bits away: far outside the match distance
    name = Profile.photo.field.storage.save("photos/dave-old.jpg", ContentFile(content))
    return Profile.objects.create(
        user=dave, photo=name, photo_dhash=stale, photo_pipeline_version=0
    )


@pytest.mark.worker
def test_reindex_background_runs_in_the_worker_and_finishes(
    worker, client, django_user_model, settings
):
    scene = images.photo(23)
    flagging.flag_image(
        file=images.upload(scene, "banned.png", "PNG"), reason="known bad", source="command"
    )
    dave_profile = _stale_copy_of_banned_scene(django_user_model, scene)
    erin = django_user_model.objects.create_user(username="erin", password="pw-erin-123")
    erin_profile = upload_photo(client, erin, images.photo(24))
    erin_hash = erin_profile.photo_dhash
    Profile.objects.filter(pk=erin_profile.pk).update(photo_pipeline_version=0)

    call_command("reindex", "--background", "--batch-size=1", verbosity=0)
    run = ReindexRun.objects.get()
    # One range of kept originals, one of profile photos: one task each.
    ranges = list(run.ranges.order_by("pk"))
    assert [(r.kind, r.rows) for r in ranges] == [
        ("moderation.flaggedfingerprint.original", 1),
        ("profiles.profile.photo", 2),
    ]
    assert sorted(
        (t.args_kwargs["args"], t.args_kwargs["kwargs"]) for t in tasks_of(reindex_range_task)
    ) == sorted(([r.pk], {"batch_size": 1}) for r in ranges)

    def finished():
        run.refresh_from_db()
        return run.finished_at

    wait_for(finished, timeout=WORKER_TIMEOUT, what="the reindex run to finish", process=worker)
    parts = wait_until_tasks_done(worker, reindex_range_task, count=2)
    [swept] = wait_until_tasks_done(worker, sweep_range_task)
    # 1 kept original + Dave's and Erin's photos; Dave's stored hash was the stale one.
    assert sorted(p.return_value["processed"] for p in parts) == [1, 2]
    assert run.counts["processed"] == 3 and run.counts["changed"] == 1
    assert swept.return_value["taken_down"] == 1
    assert run.counts["taken_down"] == 1 and run.phase == "done"
    sweep = Sweep.objects.get(run=run)
    assert (sweep.full, sweep.state, sweep.checked, sweep.taken_down) == (True, "done", 2, 1)

    dave_profile.refresh_from_db()
    assert not dave_profile.photo  # the sweep after the reindex caught the stale copy
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert takedown.target.endswith(f"(#{dave_profile.pk})")
    assert takedown.distance <= settings.MODERATION_MAX_DISTANCE
    erin_profile.refresh_from_db()
    assert erin_profile.photo and erin_profile.photo_dhash == erin_hash
    assert erin_profile.photo_pipeline_version != 0  # brought up to date


@pytest.mark.worker
def test_a_reindex_queued_by_the_previous_release_gets_its_ranges_and_finishes(
    worker, client, django_user_model
):
    first, _ = (
        flagging.flag_image(
            file=images.upload(images.photo(seed), f"b{seed}.png", "PNG"),
            reason="known bad",
            source="command",
        ).fingerprint
        for seed in (25, 26)
    )
    for name, seed in (("fay", 27), ("gus", 28)):
        user = django_user_model.objects.create_user(username=name, password=f"pw-{name}-123")
        upload_photo(client, user, images.photo(seed))
    # A run the previous release started (one cursor per kind) and queued as one task.
    run = ReindexRun.objects.create(
        pipeline_version=PIPELINE_VERSION, cursors={reindex.ORIGINALS_KEY: first.pk}
    )
    with transaction.atomic():
        enqueue_on_commit(reindex_task, run.pk, batch_size=1, sweep=True, max_seconds=0)

    def finished():
        run.refresh_from_db()
        return run.finished_at

    wait_for(finished, timeout=WORKER_TIMEOUT, what="the reindex run to finish", process=worker)
    [legacy] = wait_until_tasks_done(worker, reindex_task)
    assert legacy.return_value["ranges"] == 2
    wait_until_tasks_done(worker, reindex_range_task, count=2)
    # The first original was done before the upgrade: 1 original + 2 photos now.
    assert run.counts["processed"] == 3 and run.counts["changed"] == 0
    assert run.ranges.get(kind=reindex.ORIGINALS_KEY).lo > first.pk
    assert Profile.objects.exclude(photo="").count() == 2


@pytest.mark.django_db(transaction=True)
def test_tasks_are_queued_in_the_transaction_so_they_commit_or_roll_back_with_it(database_tasks):
    def flag(seed):
        return flagging.flag_image(
            file=images.upload(images.photo(seed), "x.png", "PNG"),
            reason="r",
            source="command",
            keep_original=False,
        ).fingerprint

    with pytest.raises(RuntimeError), transaction.atomic():
        flag(29)
        raise RuntimeError("rolled back")
    assert not DBTaskResult.objects.exists()

    with transaction.atomic():
        flagged = flag(30)
        # Queued inside the transaction (visible to its own connection only, until it
        # commits): no moment exists at which the flag is committed and its sweep is not.
        assert tasks_of(sweep_task).count() == 1
    sweep = tasks_of(sweep_task).get()
    assert sweep.status == "READY"
    state = Sweep.objects.get()  # created with the flag, in its transaction
    assert (state.state, list(state.fingerprints.all())) == ("queued", [flagged])
    assert sweep.args_kwargs == {"args": [], "kwargs": {"sweep_id": state.pk}}


def test_enqueue_on_commit_refuses_arguments_that_are_not_json():
    with pytest.raises(TypeError, match="JSON"):
        enqueue_on_commit(sweep_task, fingerprint_ids={1, 2})
    with pytest.raises(TypeError, match="round trip"):
        enqueue_on_commit(sweep_task, fingerprint_ids=(1, 2))


@pytest.mark.django_db(transaction=True)  # range tasks are enqueued on commit
def test_reindex_background_without_a_worker_backend_runs_in_the_command(client, user):
    upload_photo(client, user, images.photo(31))
    out = StringIO()
    call_command("reindex", "--background", stdout=out)
    assert "Tasks run immediately here" in out.getvalue()
    run = ReindexRun.objects.get()
    assert run.finished_at is not None and run.counts["processed"] == 1


@pytest.mark.django_db
def test_reindex_background_refuses_a_dry_run():
    with pytest.raises(CommandError, match="dry-run"):
        call_command("reindex", "--background", "--dry-run")
    assert not ReindexRun.objects.exists()


@pytest.mark.parametrize(
    "old_path, task",
    [
        ("moderation.tasks.sweep_task", sweep_task),
        ("moderation.tasks.recheck_image_task", recheck_image_task),
        ("moderation.tasks.reindex_task", reindex_task),
        ("moderation.tasks.review_digest_task", review_digest_task),
    ],
)
def test_a_task_queued_under_its_previous_import_path_still_runs_the_flows_task(old_path, task):
    """The worker finds a queued task by the path stored with it; tasks enqueued before each
    flow owned its tasks were stored as ``moderation.tasks.*``."""
    from django.utils.module_loading import import_string

    assert import_string(old_path) is task
    assert task.module_path != old_path  # new enqueues store the flow's own path


@pytest.mark.worker
def test_the_worker_loads_the_stored_photo_index_as_it_starts_not_at_the_first_sweep(
    client, user, database_tasks, transactional_db, isolated_storage
):
    upload_photo(client, user, images.photo(830))  # one stored photo: its rows in the index
    proc = ManageProcess(
        "run_worker",
        "--no-startup-delay",
        "--interval=0.1",
        f"--worker-id=pytest-warm-{os.getpid()}",
        "--verbosity=2",
        MODERATION_TASKS_BACKEND="database",
    )
    try:
        loaded = wait_for(
            lambda: "stored-photo index loaded ahead of the first sweep" in proc.output(),
            timeout=WORKER_TIMEOUT,
            what="the stored-photo index loaded by the starting worker",
            process=proc,
        )
        assert loaded
        assert not tasks_of(sweep_task).exists()  # no sweep asked for it
    finally:
        proc.stop()
        print(proc.describe())
        proc.cleanup()
