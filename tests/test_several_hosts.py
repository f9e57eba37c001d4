"""The site as several hosts, for real: two web servers and two task workers on one database.

``tests/cluster.py`` starts two gunicorn servers (production settings, two workers each) and two
task workers against this test's PostgreSQL database, one SeaweedFS S3 server (public and
quarantine buckets) and Redis. The test talks HTTP to them as browsers do (``tests/http_browser``:
login forms, CSRF, cookies) and reads the outcome from the database and the buckets.

What it proves is the shape a deployment on several hosts relies on (README, "Deploying on
several hosts"): a flag committed through one web server is enforced by the very next upload
on the other, in each of its processes, even though both had the banned set loaded before; the
flag's sweep runs once, in one worker, and moves the stored copy from the public bucket to the
quarantine bucket; and a background reindex run by the workers does every stored row once.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils.html import escape
from django_tasks_db.models import DBTaskResult

from moderation import registry
from moderation.files import delete_public_file_task
from moderation.hashing import PIPELINE_VERSION
from moderation.models import AuditEvent, FlaggedFingerprint, ReindexRun
from moderation.notices import purge_kept_takedowns_task
from moderation.sweeping import sweep_task
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import images
from tests.cluster import WEB_CONCURRENCY, Cluster, WebServer, claimed_redis_db, start_cluster
from tests.cluster import collect_static as run_collectstatic
from tests.http_browser import Browser, Page
from tests.s3server import http_get
from tests.two_factor import enrolled_device, fresh_totp_code

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.s3,
    pytest.mark.worker,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

GENERIC_REFUSAL = escape("This image can't be used as a profile photo.")
PASSWORD = "several-hosts-pw-4821"
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
# Rounds of two simultaneous uploads until each of a server's processes has answered one.
ROUNDS = 4


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def static_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    run_collectstatic(root)
    return root


@pytest.fixture
def redis_url():
    with claimed_redis_db() as url:
        yield url


@pytest.fixture
def database_tasks(settings):
    """This process enqueues into the database too, as every host does."""
    settings.TASKS = DATABASE_TASKS


@pytest.fixture
def hosts(transactional_db, database_tasks, s3, static_root, redis_url):
    with start_cluster(s3=s3, static_root=static_root, redis_url=redis_url) as cluster:
        yield cluster


@pytest.fixture
def worker_hosts(transactional_db, database_tasks, s3):
    with start_cluster(
        s3=s3, static_root=None, redis_url=None, web_servers=0, workers=2
    ) as cluster:
        yield cluster


# --- helpers ------------------------------------------------------------------------------------


@functools.cache
def password_hash() -> str:
    """The servers check passwords with the production hasher; one hash serves every user."""
    hasher = PBKDF2PasswordHasher()
    return hasher.encode(PASSWORD, hasher.salt())


def make_user(username: str, *, moderator: bool = False) -> User:
    user = User.objects.create(username=username, password=password_hash(), is_staff=moderator)
    if moderator:
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label__in=["moderation", "profiles"])
        )
    return user


def stored_profile(username: str, img) -> Profile:
    """A profile whose photo was stored earlier (written here, to the shared S3 bucket)."""
    profile = profile_for(user=make_user(username))
    profile_set_photo(profile=profile, upload=images.upload(img, f"{username}.jpg"))
    return Profile.objects.get(pk=profile.pk)


def upload_photo(browser: Browser, server: WebServer, img, name: str = "me.jpg") -> Page:
    """The profile form, filled in and posted as the person's browser does."""
    page = browser.get(f"{server.url}{reverse('profile-edit')}")
    assert page.status == 200, page.text[:2000]
    token = page.hidden_fields()["csrfmiddlewaretoken"][0]
    return browser.post(
        page.url,
        {"csrfmiddlewaretoken": token, "display_name": browser.name},
        {"photo": (name, images.encode(img, "JPEG", quality=92), "image/jpeg")},
    )


def every_process_answers(
    cluster: Cluster, server: WebServer, send, *, expect: int, what: str
) -> list[Page]:
    """Send two simultaneous requests a round (``send(i)``), until each of the server's
    processes has answered one (read from its access log); every answer must be ``expect``."""
    pids = server.worker_pids()
    assert len(pids) == WEB_CONCURRENCY, server.describe()
    seen: set[int] = set()
    pages: list[Page] = []
    with ThreadPoolExecutor(2) as pool:
        for round_ in range(ROUNDS):
            mark = server.log_size()
            answers = list(pool.map(send, (2 * round_, 2 * round_ + 1)))
            pages += answers
            assert [p.status for p in answers] == [expect, expect], (
                f"{what}: {[p.status for p in answers]}\n{answers[0].text[:2000]}"
            )
            logged = cluster.wait_for(
                lambda mark=mark: (
                    lines
                    if len(lines := server.answered("POST", "/profile/", after=mark)) >= 2
                    else None
                ),
                what=f"{server.name}'s access log of {what}",
            )
            seen |= {pid for pid, _ in logged}
            if seen == pids:
                return pages
    pytest.fail(f"{what}: after {ROUNDS} rounds only processes {seen} of {pids} answered")


def uploads_counted(cluster: Cluster, scope: str) -> int:
    """Uploads counted for ``scope`` ("user:<pk>", "ip:<address>") in the hosts' shared Redis,
    read straight from Redis (``moderation.ratelimit``'s keys, one per window)."""
    import redis

    client = redis.Redis.from_url(cluster.env["DJANGO_CACHE_URL"])
    try:
        return sum(int(client.get(key)) for key in client.scan_iter(f"*:{scope}:*"))
    finally:
        client.close()


def stored_image_count() -> int:
    """What a reindex walks: every stored image of every kind, and every kept original."""
    return sum(t.with_images().count() for t in registry.targets()) + (
        FlaggedFingerprint.objects.exclude(original="").count()
    )


def run_background_reindex(
    cluster: Cluster, *, batch_size: int, range_size: int | None = None
) -> tuple[ReindexRun, list]:
    """``manage.py reindex --background`` on a host (``range_size``: stored images per range
    task), then wait until the workers finished it (and anything it enqueued). Returns the run
    and the task results it brought."""
    before = set(DBTaskResult.objects.values_list("id", flat=True))
    runs_before = set(ReindexRun.objects.values_list("pk", flat=True))
    env = {"MODERATION_REINDEX_RANGE_SIZE": str(range_size)} if range_size else {}
    cluster.manage("reindex", "--background", f"--batch-size={batch_size}", **env)
    run = ReindexRun.objects.exclude(pk__in=runs_before).get()
    cluster.wait_for(
        lambda: ReindexRun.objects.filter(pk=run.pk, finished_at__isnull=False).exists(),
        what=f"reindex run #{run.pk} to finish",
    )
    cluster.wait_for_idle_queue(what="the reindex's tasks to finish")
    run.refresh_from_db()
    return run, list(DBTaskResult.objects.exclude(id__in=before))


# --- tests --------------------------------------------------------------------------------------


def test_flag_on_one_server_refuses_next_copy_on_other_sweeps_once_and_reindex_does_each_row_once(
    hosts: Cluster, s3
):
    a, b = hosts.web
    scene = images.photo(21)
    for name, seed in (("erin", 31), ("finn", 32), ("gwen", 33)):
        stored_profile(name, images.photo(seed))
    make_user("alice")
    bob_user = make_user("bob")
    mod_device = enrolled_device(make_user("mod", moderator=True))

    # Alice, on server A, stores a smaller copy of the scene: nothing is banned yet.
    alice = Browser("alice")
    alice.log_in(f"{a.url}{reverse('login')}", "alice", PASSWORD)
    assert upload_photo(alice, a, images.resized(scene, 0.6)).status == 302
    alice_photo = Profile.objects.get(user__username="alice").photo.name
    alice_bytes = s3.read(s3.public_bucket, alice_photo)
    # She is logged in on server B too (one session table, one secret), and her public page
    # there shows the photo from the public bucket, which anyone may read.
    assert alice.get(f"{b.url}{reverse('profile-edit')}").status == 200
    alice_url = s3.object_url(s3.public_bucket, alice_photo)
    assert alice_url in Browser("visitor").get(f"{b.url}/u/alice/").text
    assert http_get(alice_url)[:2] == (200, alice_bytes)

    # Bob, on server B: each of B's processes stores one of his (innocent) photos, so each has
    # looked the banned set up before the flag.
    bob = Browser("bob")
    bob.log_in(f"{b.url}{reverse('login')}", "bob", PASSWORD)
    stored = every_process_answers(
        hosts,
        b,
        lambda i: upload_photo(bob, b, images.photo(40 + i)),
        expect=302,
        what="Bob's photos on B",
    )
    bob_photo = Profile.objects.get(user__username="bob").photo.name
    # Each upload's recheck runs in a worker; none may be pending when the flag commits, so
    # what takes Alice's copy down is the flag's sweep.
    before_flag = {task.id for task in hosts.wait_for_idle_queue(what="the uploads' rechecks")}
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).exists()

    # The moderator, on server A: the admin's login form, then "Flag an image".
    mod = Browser("mod")
    mod.log_in(f"{a.url}{reverse('admin:login')}?next=/admin/", "mod", PASSWORD)
    # The admin opens after the second factor: the code the moderator's app shows.
    page = mod.get(f"{a.url}{reverse('moderation:two-factor-verify')}")
    verified = mod.submit(page, {"code": fresh_totp_code(mod_device)}, form_id="two-factor-form")
    assert verified.status == 302, verified.text[:2000]
    page = mod.get(f"{a.url}{reverse('admin:moderation_flaggedfingerprint_flag_image')}")
    assert page.status == 200, page.text[:2000]
    flagged_page = mod.submit(
        page,
        {"reason": "reported on server A"},
        {"image": ("scene.png", images.encode(scene, "PNG"), "image/png")},
        form_id="flag-image-form",
    )
    assert flagged_page.status == 302, flagged_page.text[:3000]
    flagged = FlaggedFingerprint.objects.get()

    # At once, on server B: every process refuses Bob's copy, with the generic message, and
    # stores nothing.
    refusals = every_process_answers(
        hosts,
        b,
        lambda i: upload_photo(bob, b, images.resized(scene, 0.9 - 0.04 * i), "copy.jpg"),
        expect=200,
        what="Bob's copies on B after the flag",
    )
    assert all(GENERIC_REFUSAL in p.text for p in refusals)
    assert Profile.objects.get(user__username="bob").photo.name == bob_photo
    # Every upload, stored or refused, on whichever process, was counted once in Redis.
    assert uploads_counted(hosts, f"user:{bob_user.pk}") == len(stored) + len(refusals)
    assert uploads_counted(hosts, "ip:127.0.0.1") == 1 + len(stored) + len(refusals)

    # The flag queued one task, its sweep; one of the workers ran it, once, and it took
    # Alice's stored copy down, once (queuing, with the takedown, the deletion of its public
    # file and the purge of its kept copy at the end of the keep period: the only other new
    # tasks).
    tasks = hosts.wait_for_idle_queue(what="the flag's sweep")
    new_tasks = {task.task_path: task for task in tasks if task.id not in before_flag}
    assert sorted(new_tasks) == sorted(
        [
            sweep_task.module_path,
            delete_public_file_task.module_path,
            purge_kept_takedowns_task.module_path,
        ]
    )
    assert new_tasks[purge_kept_takedowns_task.module_path].status == "READY"  # months away
    sweep = new_tasks[sweep_task.module_path]
    after_flag = [task for task in tasks if task.id not in before_flag]
    assert len(after_flag) == 3, [(t.task_path, t.args_kwargs, t.status) for t in after_flag]
    assert sweep.status == "SUCCESSFUL"
    assert len(sweep.worker_ids) == 1 and set(sweep.worker_ids) <= hosts.worker_ids
    [takedown] = AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN)
    alice_profile = Profile.objects.get(user__username="alice")
    assert takedown.target.endswith(f"(#{alice_profile.pk})")
    assert takedown.fingerprint == flagged and takedown.actor is None
    assert not alice_profile.photo
    # Moved: gone from the public bucket (an anonymous GET finds nothing), the same bytes now
    # in the quarantine bucket as the takedown's evidence, next to the flag's original.
    assert alice_photo not in s3.keys(s3.public_bucket)
    assert http_get(alice_url)[0] == 404
    assert alice_url not in Browser("visitor").get(f"{b.url}/u/alice/").text
    assert sorted(s3.keys(s3.quarantine_bucket)) == sorted(
        [takedown.evidence.name, flagged.original.name]
    )
    assert s3.read(s3.quarantine_bucket, takedown.evidence.name) == alice_bytes
    assert http_get(s3.object_url(s3.quarantine_bucket, takedown.evidence.name))[0] == 403

    # A background reindex, run by the workers, does every stored row once.
    Profile.objects.exclude(photo="").update(photo_pipeline_version=0)
    expected = stored_image_count()
    assert expected == 5  # Erin's, Finn's, Gwen's and Bob's photos, the flag's original
    run, tasks = run_background_reindex(hosts, batch_size=2)
    assert run.counts["processed"] == expected
    assert set(
        Profile.objects.exclude(photo="").values_list("photo_pipeline_version", flat=True)
    ) == {PIPELINE_VERSION}
    assert set(FlaggedFingerprint.objects.values_list("pipeline_version", flat=True)) == {
        PIPELINE_VERSION
    }
    assert tasks, "the reindex enqueued nothing"
    for task in tasks:
        assert task.status == "SUCCESSFUL"
        assert len(task.worker_ids) == 1 and set(task.worker_ids) <= hosts.worker_ids, task
    # Its full sweep found nothing more to take down: still one takedown.
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).count() == 1


def test_a_background_reindex_is_shared_by_both_workers(worker_hosts: Cluster):
    for number in range(12):
        stored_profile(f"user{number}", images.photo(60 + number))
    Profile.objects.update(photo_pipeline_version=0)
    expected = stored_image_count()
    # Ranges of 2 stored images: a dozen range tasks (and as many for the full sweep), which
    # both workers take from the one queue.
    run, tasks = run_background_reindex(worker_hosts, batch_size=1, range_size=2)
    if run.counts.get("processed") != expected:
        pytest.fail(f"processed {run.counts} of {expected} stored images")

    took_part = {worker_id for task in tasks for worker_id in task.worker_ids}
    assert took_part == worker_hosts.worker_ids
