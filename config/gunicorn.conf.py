"""gunicorn settings, from the environment: `gunicorn -c config/gunicorn.conf.py config.wsgi`."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")


def default_workers(environ, cores: int) -> int:
    """Sync workers for this host when ``WEB_CONCURRENCY`` is not set.

    A sync worker serves one request from start to end, and an upload is almost all CPU:
    decoding, re-encoding and fingerprinting. With photos on local disk a host waits on little
    else (the proxy in front buffers request bodies, as sync workers require), so one worker
    per core lets uploads queue in order instead of sharing cores: in the upload benchmark at
    10M entries it had the lower p99 in nearly every interleaved round against 2 x cores + 1,
    at no more CPU per upload (docs/performance.md, "One web worker per core by default").
    With S3 storage (``MODERATION_S3_BUCKET``) each upload also waits on the object store,
    and gunicorn's 2 x cores + 1 keeps the cores busy meanwhile.
    """
    if environ.get("MODERATION_S3_BUCKET", "").strip():
        return 2 * cores + 1
    return cores


_cores = (getattr(os, "process_cpu_count", None) or multiprocessing.cpu_count)() or 1
workers = int(os.environ.get("WEB_CONCURRENCY") or default_workers(os.environ, _cores))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# Fingerprinting a large photo takes a fraction of a second; anything near this is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
# Each worker loads the banned set on its first lookup; recycle workers now and then.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# gunicorn's own lines (start-up, worker restarts, the access log) as JSON on stderr too when
# the site logs JSON (DJANGO_LOG_FORMAT, by default json when DJANGO_DEBUG is off): one format
# for the log tools. The access line is the message; the request id is the site's own lines'.
_debug = os.environ.get("DJANGO_DEBUG", "1").lower() not in ("0", "false", "no", "off")
if os.environ.get("DJANGO_LOG_FORMAT", "text" if _debug else "json") == "json":
    accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") != "0" else None
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "config.jsonlog.JSONFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json"},
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }
