"""Flags with a record, for the tests of the record and precision (``moderation.precision``) and
the pages that show it. Registered in ``conftest.py`` (``pytest_plugins``).

``poor_flag``: the sweep after the flag took down three photos of one scene (re-compressed
copies on three profiles) and an upload of a fourth copy was refused; two takedowns were
appealed and overturned, one appealed and upheld; three queued near misses were dismissed at
the desk. Judged: 1 right, 5 wrong, so 16 % over 6 judged decisions: poor.

``quiet_flag``: one appeal upheld, one near miss dismissed: 2 judged, not enough data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.utils import timezone

from moderation import appeals, desk
from moderation.models import FlaggedFingerprint, Notice, ReviewItem
from tests import images
from tests.helpers import ban

POOR_SCENE = 1701
QUIET_SCENE = 1702


def queue_near_miss(
    flagged: FlaggedFingerprint,
    n: int,
    *,
    status: str = ReviewItem.Status.PENDING,
    found_by: str = ReviewItem.FoundBy.UPLOAD,
) -> ReviewItem:
    """A near miss queued under ``flagged`` (as the recheck after an upload writes it), left
    pending or already decided with ``status``."""
    decided = status != ReviewItem.Status.PENDING
    return ReviewItem.objects.create(
        target_key="profiles.profile.photo",
        object_id=10_000 + n,
        target=f"near miss {n}",
        file_name=f"photos/near-{flagged.pk}-{n}.jpg",
        dhash=flagged.dhash ^ (0b1111111 << n),
        fingerprint=flagged,
        distance=7,
        status=status,
        found_by=found_by,
        decided_at=timezone.now() if decided else None,
    )


def dismiss_near_misses(flagged: FlaggedFingerprint, count: int, moderator, first: int = 0):
    """``count`` near misses queued under ``flagged``, each dismissed at the desk."""
    for n in range(first, first + count):
        assert desk.review_dismiss(
            item=queue_near_miss(flagged, n), actor=moderator, reason="not the picture"
        )


def take_down_copies(make_profile, scene_seed: int, people: list[str], capture):
    """Each person's profile holds a re-compressed copy of the scene; the scene is flagged and
    its sweep takes every copy down. Returns the flag and each person's notice."""
    scene = images.photo(scene_seed)
    profiles = [
        make_profile(name, images.recompressed(scene, 80 + i)) for i, name in enumerate(people)
    ]
    with capture(execute=True):
        flagged = ban(scene, reason="known bad scene")
    notices = [Notice.objects.get(user=p.user, fingerprint=flagged) for p in profiles]
    return flagged, notices


def appeal_and_decide(notice: Notice, moderator, *, overturn: bool) -> None:
    appeal = appeals.file_appeal(notice=notice, user=notice.user, text="Not that picture.")
    decided = appeals.decide_appeal(
        appeal=appeal, actor=moderator, overturn=overturn, reason="looked at both"
    )
    assert decided.decided


@dataclass(frozen=True)
class PoorFlag:
    flagged: FlaggedFingerprint
    scene_seed: int


@pytest.fixture
def poor_flag(make_profile, moderator, upload, django_capture_on_commit_callbacks) -> PoorFlag:
    flagged, notices = take_down_copies(
        make_profile, POOR_SCENE, ["ana", "ben", "cai"], django_capture_on_commit_callbacks
    )
    response = upload(images.recompressed(images.photo(POOR_SCENE), 90))
    assert response.status_code == 200  # refused, the form shown again
    appeal_and_decide(notices[0], moderator, overturn=True)
    appeal_and_decide(notices[1], moderator, overturn=True)
    appeal_and_decide(notices[2], moderator, overturn=False)
    dismiss_near_misses(flagged, 3, moderator)
    flagged.refresh_from_db()
    assert flagged.active  # 5 allowed matches: not more than MODERATION_MAX_DISMISSALS
    return PoorFlag(flagged, POOR_SCENE)


@pytest.fixture
def quiet_flag(make_profile, moderator, django_capture_on_commit_callbacks) -> FlaggedFingerprint:
    flagged, notices = take_down_copies(
        make_profile, QUIET_SCENE, ["dee"], django_capture_on_commit_callbacks
    )
    appeal_and_decide(notices[0], moderator, overturn=False)
    dismiss_near_misses(flagged, 1, moderator, first=20)
    return flagged
