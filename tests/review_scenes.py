"""The review-queue scene the review and desk tests share: a banned scene and a near miss of
it, uploaded and queued. Registered in ``conftest.py`` (``pytest_plugins``)."""

from __future__ import annotations

import pytest

from moderation.models import ReviewItem
from tests import images
from tests.helpers import ban


@pytest.fixture
def scene(settings):
    """A banned scene and a copy of it 7 dHash bits away, blemished in the middle so that its
    cuts are no match either (the upload's centre and caption band are compared with the
    flag's)."""
    original = images.photo(801)
    near = images.near_miss(original, beyond=settings.MODERATION_MAX_DISTANCE)
    return ban(original), near


@pytest.fixture
def queued(scene, upload, user):
    flagged, near = scene
    response = upload(near)
    assert response.status_code == 302  # accepted
    return ReviewItem.objects.get()
