"""WSGI entry point (gunicorn config.wsgi).

Once the application is loaded, the objects it allocated so far are taken out of the garbage
collector's full collections (``gc.freeze``). That is about 160,000 objects: Django, the
apps, numpy, Pillow. They live as long as the worker, and a full collection walked them all
each time, 65-80 ms in which the worker answered nothing. That happened about once per
80 uploads in each worker, and each pause also held up the uploads queued behind it. After
the freeze a full collection takes 8-11 ms (``python benchmarks/gc_pause.py``;
docs/performance.md). Refcounting still frees frozen objects; only a reference cycle among
them would wait for the worker's recycling (every ~2,000 requests, config/gunicorn.conf.py),
and what loading makes lives as long as the process anyway. Every object made afterwards is
collected as before.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
gc.freeze()
