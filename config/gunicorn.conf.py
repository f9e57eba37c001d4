"""gunicorn settings, from the environment: `gunicorn -c config/gunicorn.conf.py config.wsgi`."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
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
