"""How long the garbage collector stops a web worker, with the app's objects frozen and without.

    python benchmarks/gc_pause.py [PHOTOS_DIR] [--uploads 300]
                                  (default ../shared/corpus/photos)

``config/wsgi.py`` freezes what loading the application allocated (``gc.freeze``), so a full
collection no longer walks Django, the apps, numpy and Pillow each time. This runs the same
uploads twice, each time in a fresh process that loads ``config.wsgi`` as a gunicorn worker
does. The first process keeps the freeze; the second undoes it (``gc.unfreeze``) right after
loading. Each posts ``--uploads`` ~2 MP JPEGs (``upload_latency.make_photos``) through
the real ``/profile/`` view with Django's test client, on a throwaway SQLite database
migrated beforehand in a process of its own.
While the uploads run, every full (generation 2) collection is timed, and one more full
collection is timed at the end.

Prints each process's pauses and, last, one line:
``gc pause: full collection F ms frozen, U ms unfrozen (N and M during U uploads)``.
Not part of the test run; its numbers are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "photos", nargs="?", default=str(ROOT.parent / "shared" / "corpus" / "photos")
    )
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--worker", choices=("frozen", "unfrozen"), help=argparse.SUPPRESS)
    return parser.parse_args()


def environment(folder: Path) -> dict[str, str]:
    """The settings both processes run with: a throwaway SQLite database and media folder."""
    return {
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "gc-pause-benchmark-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_STATIC_ROOT": str(folder / "static"),
        "DJANGO_MEDIA_ROOT": str(folder / "media"),
        "MODERATION_QUARANTINE_ROOT": str(folder / "quarantine"),
        "MODERATION_SNAPSHOT_DIR": "",
        "MODERATION_TASKS_BACKEND": "database",
        "MODERATION_UPLOAD_RATE_PER_USER": "0",
        "MODERATION_UPLOAD_RATE_PER_IP": "0",
        "DJANGO_LOG_LEVEL": "ERROR",
    }


def worker(args: argparse.Namespace) -> dict:
    """One process: load the app as gunicorn does, upload, and time the full collections."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import config.wsgi  # noqa: F401 - loads the app and freezes, as in a gunicorn worker

    frozen_at_load = gc.get_freeze_count()
    if args.worker == "unfrozen":
        gc.unfreeze()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client
    from upload_latency import make_photos

    photos = make_photos(Path(args.photos), min(args.uploads, 40))
    client = Client()
    client.force_login(get_user_model().objects.create(username=f"gc-{args.worker}"))
    gc.collect()  # the set-up's garbage, gone: from here on a worker's steady state

    pauses: list[float] = []
    started: list[float] = []

    def timed(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started.append(time.perf_counter())
        else:
            pauses.append((time.perf_counter() - started.pop()) * 1000)

    gc.callbacks.append(timed)
    for i in range(args.uploads):
        photo = SimpleUploadedFile("p.jpg", photos[i % len(photos)], "image/jpeg")
        response = client.post("/profile/", {"display_name": "gc", "photo": photo})
        if response.status_code not in (200, 302):
            raise SystemExit(f"upload {i} answered {response.status_code}")
    gc.callbacks.remove(timed)
    gc.collect()  # what was garbage, gone: the next collection is the walk alone
    walks = []
    for _ in range(3):
        began = time.perf_counter()
        gc.collect()
        walks.append((time.perf_counter() - began) * 1000)
    return {
        "frozen_at_load": frozen_at_load,
        "tracked": len(gc.get_objects()),
        "pauses": pauses,
        "full": statistics.median(walks),
    }


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if not Path(args.photos).is_dir():
        raise SystemExit(f"no photo folder {args.photos}")
    folder = Path(tempfile.mkdtemp(prefix="gc-pause-"))
    env = {**os.environ, **environment(folder)}
    for command in (["migrate"], ["collectstatic", "--noinput"]):
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *command, "--verbosity", "0"],
            check=True,
            env=env,
        )
    results = {}
    for kind in ("frozen", "unfrozen"):
        out = subprocess.run(
            [sys.executable, __file__, args.photos, "--uploads", str(args.uploads)]
            + ["--worker", kind],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        results[kind] = json.loads(out.strip().splitlines()[-1])
        r = results[kind]
        pauses = ", ".join(f"{p:.1f} ms" for p in r["pauses"]) or "none"
        print(
            f"{kind}: {r['frozen_at_load']:,} objects frozen at load"
            f"{' (then unfrozen)' if kind == 'unfrozen' else ''}, {r['tracked']:,} tracked at "
            f"the end; full collections during {args.uploads} uploads: {pauses}; "
            f"one more at the end: {r['full']:.1f} ms"
        )
    f, u = results["frozen"], results["unfrozen"]
    print(
        f"gc pause: full collection {f['full']:.1f} ms frozen, {u['full']:.1f} ms unfrozen "
        f"({len(f['pauses'])} and {len(u['pauses'])} during {args.uploads} uploads)"
    )


if __name__ == "__main__":
    main()
