"""Upload limits counted in Redis are shared by every process, as production needs them to be.

With the per-process default cache each web worker would count alone; pointed at Redis
(``DJANGO_CACHE_URL=redis://...``), an upload counted here is seen by a separate process.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests import images
from tests.cluster import claimed_redis_db
from tests.processes import manage

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]



@pytest.fixture
def redis_cache(settings):
    """The default cache on a Redis database this test alone holds (``claimed_redis_db``: a
    run beside this one, on the other database or in another worker, claims another), emptied
    when claimed and when given back. Skips without Redis (fails when ``CI`` is set)."""
    with claimed_redis_db() as url:
        before = settings.CACHES
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
        }
        try:
            yield url
        finally:
            # Off Redis before the claim is given back: the autouse ``empty_cache`` clears the
            # default cache after this, and must not empty a database another run claimed since.
            settings.CACHES = before


def test_uploads_counted_in_one_process_are_seen_by_another(
    redis_cache, client, django_user_model, settings
):
    settings.MODERATION_UPLOAD_RATE_PER_USER = 2
    user = django_user_model.objects.create_user(username="rita", password="pw")
    client.force_login(user)
    for seed in (1, 2):
        response = client.post(
            reverse("profile-edit"),
            {"display_name": "Rita", "photo": images.upload(images.photo(seed))},
        )
        assert response.status_code == 302

    # A separate process with the same cache counts the third upload as over the limit.
    script = (
        "from django.test import RequestFactory; from django.contrib.auth import get_user_model; "
        "from django.conf import settings; settings.MODERATION_UPLOAD_RATE_PER_USER = 2; "
        "from moderation import ratelimit; "
        f"request = RequestFactory().post('/profile/', REMOTE_ADDR='198.51.100.9'); "
        f"request.user = get_user_model().objects.get(pk={user.pk}); "
        "print(ratelimit.check_upload_rate(request))"
    )
    result = manage("shell", "-c", script, DJANGO_CACHE_URL=redis_cache)
    assert "RateLimited(scope='user'" in result.stdout, result.stdout + result.stderr

    # And this process now refuses the next upload too.
    response = client.post(
        reverse("profile-edit"),
        {"display_name": "Rita", "photo": images.upload(images.photo(3))},
    )
    assert response.status_code == 429
