"""Settings for the moderation site.

Every knob is an environment variable with a safe local default, so that a fresh clone runs
with SQLite and media on disk and nothing else to start. Production sets `DATABASE_URL`,
the storage variables and `DJANGO_SECRET_KEY` (see docs/operations.md, "Production").
"""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from moderation import conf as moderation_conf

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from e


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_moderation(name: str) -> int | str:
    """A MODERATION_* setting from the environment variable of the same name.

    Its default and kind (so int or str) are declared once, in moderation/conf.py, with what
    the setting does; moderation/checks.py checks the value at start-up.
    """
    declared = moderation_conf.SETTINGS[name]
    if declared.kind is moderation_conf.Kind.STR:
        return env_str(name, declared.default)
    return env_int(name, declared.default)


DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off.")
    SECRET_KEY = "local-development-only-not-secret"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
if not DEBUG and not os.environ.get("DJANGO_ALLOWED_HOSTS"):
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS is required when DJANGO_DEBUG is off (e.g. profiles.example.com)."
    )

# --- Staff accounts: two-factor authentication and login throttling -----------------------
# Every account that can moderate (staff, superusers, anyone holding a moderation permission)
# must enrol a TOTP device (django-otp) and verify a code before the admin opens; recovery
# codes are django-otp static tokens. Enrol, verify, revoke and reset are audited
# (moderation/two_factor.py). Logins on /login/ and /admin/login/, wrong second-factor codes
# and sign-ups are throttled per username and per client IP by django-axes: after
# AXES_FAILURE_LIMIT failures that username, or that IP, is locked out for
# AXES_COOLOFF_MINUTES; a superuser lifts a lockout early by deleting its "Access attempt" in
# the admin, or with `manage.py axes_reset_username NAME` / `axes_reset_ip IP`.
STAFF_SECURITY_APPS = [
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
]
STAFF_SECURITY_MIDDLEWARE_AFTER_AUTH = ["django_otp.middleware.OTPMiddleware"]
# AxesMiddleware turns a lockout into the lockout page; axes asks for it to be last.
STAFF_SECURITY_MIDDLEWARE_LAST = ["axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = [
    # Refuses a locked-out username or IP before the password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# The issuer name an authenticator app shows next to the account.
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Moderated profiles")
# A code is accepted from one 30 s step before to one step after the server's clock, always.
# django-otp would otherwise learn a "drift" from every code not of the current step -- one
# typed at second 29 and posted at second 31 sets it to -1, an app a few seconds ahead to +1
# -- and shift the next login's window by it, so that next login refuses a valid code at a
# step boundary (tests/test_two_factor_time_steps.py). Phones keep network time; the
# tolerance covers the seconds a person takes to type.
OTP_TOTP_SYNC = False
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
# Each alone: one username from many IPs, or one IP trying many usernames.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# 429 with "Please wait N minutes" (templates/registration/locked_out.html).
AXES_LOCKOUT_CALLABLE = "moderation.two_factor_views.lockout_response"
# The same client IP as the upload limits (MODERATION_TRUSTED_PROXY_COUNT).
AXES_CLIENT_IP_CALLABLE = "moderation.ratelimit.client_ip"
# --- end of staff accounts -----------------------------------------------------------------

INSTALLED_APPS = [
    # The admin site requires a verified second factor (config/admin_site.py).
    "config.admin_site.TwoFactorAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks_db",
    *STAFF_SECURITY_APPS,
    "moderation",
    "profiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    *STAFF_SECURITY_MIDDLEWARE_AFTER_AUTH,
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    *STAFF_SECURITY_MIDDLEWARE_LAST,
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

# SQLite on disk by default; DATABASE_URL=postgres://user@host:5432/name for PostgreSQL.
_database_url = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        _database_url,
        # PostgreSQL keeps its connections between requests (checked before reuse): opening
        # one per request costs a server process each time. Not SQLite, where opening is free
        # and the dev server's thread per request would only leave them behind.
        conn_max_age=env_int(
            "DATABASE_CONN_MAX_AGE", 60 if _database_url.startswith("postgres") else 0
        ),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not env_bool(
    "DATABASE_PG_JIT", False
):
    # PostgreSQL's JIT compiles a query it estimates as costly before running it; the admin's
    # lists of every flag and entry with their records are such queries, and compiling takes
    # longer than running them (benchmarks/flag_list_sort.py, the flag list sorted by
    # precision at 714,285 flags: 6.5 s with it, 0.57 s without). Off for the site's
    # connections.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"]["options"] = " ".join(
        filter(None, [DATABASES["default"]["OPTIONS"].get("options", ""), "-c jit=off"])
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_SERVER_SIDE_BINDING", True
):
    # Values travel apart from the SQL (psycopg's server-side binding): none is quoted into
    # the statement's text in Python, 3.5-4 ms of web CPU per upload at 10M entries
    # (docs/performance.md). A statement a connection runs again keeps one text, so after
    # DATABASE_PREPARE_THRESHOLD runs PostgreSQL prepares it once and skips parsing and
    # planning it from then on; 0 behind a pooler that cannot keep prepared statements
    # (PgBouncer in transaction mode before 1.21, or without max_prepared_statements).
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
    _prepare_after = env_int("DATABASE_PREPARE_THRESHOLD", 5)
    if _prepare_after > 0:
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = _prepare_after
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The file is shared by processes: the dev server's threads, a task worker, commands. WAL
    # lets readers run beside the one writer; IMMEDIATE takes the write lock when a transaction
    # begins, so one that reads and then writes waits its turn (up to the timeout, seconds)
    # instead of failing half-way with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL",
        "timeout": env_int("DATABASE_SQLITE_TIMEOUT", 20),
        **DATABASES["default"].get("OPTIONS", {}),
    }
    # Tests use a file, not SQLite's private in-memory database, so that the processes a test
    # starts (the task worker, management commands) open the same test database. One file per
    # test run (pid), removed when the run ends; pytest-xdist adds its own per-worker suffix.
    DATABASES["default"]["TEST"] = {
        "NAME": env_str(
            "DATABASE_SQLITE_TEST_NAME",
            str(Path(tempfile.gettempdir()) / f"moderation-test-{os.getpid()}.sqlite3"),
        ),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One date format on every admin and moderator page (config/formats/en/formats.py), instead
# of the locale's "Jan. 5, 2026, 3:04 p.m." beside templates' own "2026-01-05 15:04".
FORMAT_MODULE_PATH = ["config.formats"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "profile-edit"
LOGOUT_REDIRECT_URL = "home"

# --- Files -------------------------------------------------------------------------------
# "default" holds public profile photos; "quarantine" holds flagged originals and taken-down
# photos, which must never be served publicly (no base_url: nothing builds a URL for them).
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
# Locally WhiteNoise serves straight from the apps' static folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_URL = env_str("DJANGO_MEDIA_URL", "/media/")
MEDIA_ROOT = Path(env_str("DJANGO_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
QUARANTINE_ROOT = Path(env_str("MODERATION_QUARANTINE_ROOT", str(BASE_DIR / "var" / "quarantine")))

# Browsers must take every response for the type it declares, never sniff a user's file into
# HTML or script: SecurityMiddleware adds `X-Content-Type-Options: nosniff` everywhere, media
# served locally included (Django's default, stated because this site serves user files).
SECURE_CONTENT_TYPE_NOSNIFF = True

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    },
    "quarantine": {
        "BACKEND": "moderation.storage.PrivateFileSystemStorage",
        "OPTIONS": {"location": str(QUARANTINE_ROOT), "base_url": None},
    },
    # Compressed, cache-busting static files served by WhiteNoise (needs collectstatic);
    # the plain storage locally so runserver needs no build step.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- S3 storage --------------------------------------------------------------------------------
# MODERATION_S3_BUCKET set: public photos and quarantined originals live in S3-compatible object
# storage (django-storages), configured from AWS_S3_* / MODERATION_S3_* variables, parsed and
# checked in config/s3_storage.py (docs/operations.md, "Object storage"). Unset: the folders above.
from config.s3_storage import s3_storages  # noqa: E402

STORAGES.update(s3_storages(os.environ))
# --- end of S3 storage -----------------------------------------------------------------------

# Uploads larger than this are refused before the image is decoded (bytes).
MODERATION_MAX_UPLOAD_BYTES = env_moderation("MODERATION_MAX_UPLOAD_BYTES")
# Let Django stream anything bigger than the in-memory threshold to a temporary file;
# the request itself is capped a little above the photo limit so the form can say why.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# A request body larger than this is answered 413 before Django reads it (a photo at the
# byte limit plus room for the rest of the form).
MODERATION_MAX_REQUEST_BYTES = env_moderation("MODERATION_MAX_REQUEST_BYTES")

# --- Production hardening (DJANGO_DEBUG=0) -------------------------------------------------
# `manage.py check --deploy` is clean with these; TLS is expected to end at a proxy that sets
# X-Forwarded-Proto.
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- Email -------------------------------------------------------------------------------
# Moderators who opt in get an email when the review queue grows. Locally (DEBUG) the console
# backend prints it; in production the default is SMTP at DJANGO_EMAIL_HOST:DJANGO_EMAIL_PORT
# (DJANGO_EMAIL_BACKEND picks another backend; the file-based one writes to
# DJANGO_EMAIL_FILE_PATH).
_email_backend = env_str(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
MAILERS = {
    "default": {
        "BACKEND": _email_backend,
        "OPTIONS": (
            {
                "host": env_str("DJANGO_EMAIL_HOST", "localhost"),
                "port": env_int("DJANGO_EMAIL_PORT", 25),
            }
            if _email_backend.endswith("smtp.EmailBackend")
            # One file per sent message batch (tests of the worker count what it sent).
            else {"file_path": env_str("DJANGO_EMAIL_FILE_PATH", "var/mail")}
            if _email_backend.endswith("filebased.EmailBackend")
            else {}
        ),
    }
}
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "moderation@localhost")

# --- Moderation --------------------------------------------------------------------------
# Each MODERATION_* setting is declared in moderation/conf.py: its default, its range (checked
# at start-up by moderation/checks.py) and what it does. Here each is read from the environment
# variable of the same name. The match rule's distances come from `manage.py evaluate_matching`
# on the corpus (docs/matching.md, "What it catches").
MODERATION_MAX_DISTANCE = env_moderation("MODERATION_MAX_DISTANCE")
MODERATION_MAX_CONFIRM_DISTANCE = env_moderation("MODERATION_MAX_CONFIRM_DISTANCE")
MODERATION_MAX_UNCONFIRMED_DISTANCE = env_moderation("MODERATION_MAX_UNCONFIRMED_DISTANCE")
MODERATION_MIN_INFORMATION = env_moderation("MODERATION_MIN_INFORMATION")
MODERATION_REVIEW_DISTANCE = env_moderation("MODERATION_REVIEW_DISTANCE")
MODERATION_REVIEW_CONFIRM_DISTANCE = env_moderation("MODERATION_REVIEW_CONFIRM_DISTANCE")
MODERATION_ALLOWLIST_DISTANCE = env_moderation("MODERATION_ALLOWLIST_DISTANCE")
MODERATION_MAX_DISMISSALS = env_moderation("MODERATION_MAX_DISMISSALS")
MODERATION_REVIEW_NOTIFY_MINUTES = env_moderation("MODERATION_REVIEW_NOTIFY_MINUTES")
MODERATION_PRECISION_POOR_BELOW = env_moderation("MODERATION_PRECISION_POOR_BELOW")
MODERATION_PRECISION_MIN_JUDGED = env_moderation("MODERATION_PRECISION_MIN_JUDGED")
MODERATION_FLOOD_MAX_USERS = env_moderation("MODERATION_FLOOD_MAX_USERS")
MODERATION_FLOOD_WINDOW_MINUTES = env_moderation("MODERATION_FLOOD_WINDOW_MINUTES")
MODERATION_PROBER_ATTEMPTS = env_moderation("MODERATION_PROBER_ATTEMPTS")
MODERATION_PROBER_WINDOW_MINUTES = env_moderation("MODERATION_PROBER_WINDOW_MINUTES")
MODERATION_SITE_URL = env_moderation("MODERATION_SITE_URL")
MODERATION_REINDEX_RANGE_SIZE = env_moderation("MODERATION_REINDEX_RANGE_SIZE")
MODERATION_SNAPSHOT_DIR = env_moderation("MODERATION_SNAPSHOT_DIR")
MODERATION_SNAPSHOT_DELTA_LIMIT = env_moderation("MODERATION_SNAPSHOT_DELTA_LIMIT")
MODERATION_MAX_PIXELS = env_moderation("MODERATION_MAX_PIXELS")
MODERATION_MIN_SIDE = env_moderation("MODERATION_MIN_SIDE")
MODERATION_MAX_FRAMES = env_moderation("MODERATION_MAX_FRAMES")
MODERATION_MAX_METADATA_BYTES = env_moderation("MODERATION_MAX_METADATA_BYTES")

# --- Abuse: upload rate limits -------------------------------------------------------------
# Uploads per user and per client IP in each window, and the proxies trusted for the client IP
# (moderation/conf.py). The counters live in the cache (CACHES below): locmem is per process,
# so production must point CACHES at a shared cache (DJANGO_CACHE_URL=redis://... or
# "database") or each worker counts alone.
MODERATION_UPLOAD_RATE_PER_USER = env_moderation("MODERATION_UPLOAD_RATE_PER_USER")
MODERATION_UPLOAD_RATE_PER_IP = env_moderation("MODERATION_UPLOAD_RATE_PER_IP")
MODERATION_UPLOAD_RATE_WINDOW = env_moderation("MODERATION_UPLOAD_RATE_WINDOW")  # seconds

# --- Notices, appeals and reports ----------------------------------------------------------
# How long a taken-down photo is kept for an appeal, how many of those an unflag puts back in
# the request (more go to the task worker), how many appeals and photo reports a
# person may file, and how many new-address confirmation emails a person and a client IP may
# ask for per window (moderation/conf.py).
MODERATION_TAKEDOWN_KEEP_DAYS = env_moderation("MODERATION_TAKEDOWN_KEEP_DAYS")
MODERATION_RESTORE_INLINE_MAX = env_moderation("MODERATION_RESTORE_INLINE_MAX")
MODERATION_APPEAL_RATE_WINDOW = env_moderation("MODERATION_APPEAL_RATE_WINDOW")  # seconds
MODERATION_APPEAL_RATE_PER_USER = env_moderation("MODERATION_APPEAL_RATE_PER_USER")
MODERATION_REPORT_RATE_WINDOW = env_moderation("MODERATION_REPORT_RATE_WINDOW")  # seconds
MODERATION_REPORT_RATE_PER_USER = env_moderation("MODERATION_REPORT_RATE_PER_USER")
MODERATION_TRUSTED_PROXY_COUNT = env_moderation("MODERATION_TRUSTED_PROXY_COUNT")
MODERATION_EMAIL_RATE_WINDOW = env_moderation("MODERATION_EMAIL_RATE_WINDOW")  # seconds
MODERATION_EMAIL_RATE_PER_USER = env_moderation("MODERATION_EMAIL_RATE_PER_USER")
MODERATION_EMAIL_RATE_PER_IP = env_moderation("MODERATION_EMAIL_RATE_PER_IP")

# DJANGO_CACHE_URL: unset or "locmem" (this process only), "database" (the django_cache table;
# run `manage.py createcachetable`), or redis://host:6379/0 (needs the `redis` package).
_cache_url = env_str("DJANGO_CACHE_URL", "locmem")
if _cache_url == "locmem":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif _cache_url == "database":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "django_cache",
        }
    }
elif _cache_url.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
        }
    }
else:
    raise ImproperlyConfigured(
        f"DJANGO_CACHE_URL must be locmem, database or a redis:// URL, got {_cache_url!r}"
    )

# --- Tasks -------------------------------------------------------------------------------
# Locally tasks run immediately in the request; production uses the database backend and a
# `manage.py run_worker` process (MODERATION_TASKS_BACKEND=database).
_TASK_BACKENDS = {
    "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    "database": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]},
}
_task_backend = env_str("MODERATION_TASKS_BACKEND", "immediate")
if _task_backend not in _TASK_BACKENDS:
    raise ImproperlyConfigured(
        f"MODERATION_TASKS_BACKEND must be one of {sorted(_TASK_BACKENDS)}, got {_task_backend!r}"
    )
TASKS = {"default": _TASK_BACKENDS[_task_backend]}
# The production worker, `manage.py run_worker` (moderation/worker.py): heartbeats, the lease
# after which a dead worker's task runs again, retries with backoff.
MODERATION_WORKER_HEARTBEAT_SECONDS = env_moderation("MODERATION_WORKER_HEARTBEAT_SECONDS")
MODERATION_WORKER_LEASE_SECONDS = env_moderation("MODERATION_WORKER_LEASE_SECONDS")
MODERATION_TASK_MAX_ATTEMPTS = env_moderation("MODERATION_TASK_MAX_ATTEMPTS")
MODERATION_TASK_RETRY_SECONDS = env_moderation("MODERATION_TASK_RETRY_SECONDS")

# === Operations: logs, error reports, health, security headers ================================
# One block, so that other changes to this file do not interleave with it. What each knob does:
# docs/operations.md, "Logs, errors and health".
from django.utils.csp import CSP  # noqa: E402

# Every log line is one JSON object on stderr (config/jsonlog.py): time, level, logger, message,
# request id, user id, the event's fields, a traceback as one field. DJANGO_LOG_FORMAT=text
# gives plain lines (the local default, for reading in a terminal).
LOG_FORMAT = env_str("DJANGO_LOG_FORMAT", "text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"DJANGO_LOG_FORMAT must be json or text, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "config.jsonlog.RequestContextFilter"}},
    "formatters": {
        "json": {"()": "config.jsonlog.JSONFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",  # stderr
            "filters": ["request_context"],
            "formatter": LOG_FORMAT,
        },
    },
    "root": {"handlers": ["stderr"], "level": env_str("DJANGO_LOG_LEVEL", "WARNING")},
    "loggers": {
        # Replaces Django's own handlers: errors of django.request (500s, with their
        # traceback) go to stderr with DEBUG on or off, not to mail_admins only.
        "django": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        # "Task id=... state=..." for every task: noise in commands; the worker logs its own.
        "django.tasks": {"level": env_str("DJANGO_TASKS_LOG_LEVEL", "WARNING")},
        "moderation": {
            "handlers": ["stderr"],
            "level": env_str("MODERATION_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        # Each moderation decision as an event (flag, takedown, refusal, review...): in the
        # JSON log by default; off in plain-text mode so that a command run by hand shows its
        # own report only. MODERATION_DECISION_LOG_LEVEL=INFO turns them on.
        "moderation.decisions": {
            "level": env_str(
                "MODERATION_DECISION_LOG_LEVEL", "INFO" if LOG_FORMAT == "json" else "WARNING"
            )
        },
        "profiles": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "config": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
# Python's warnings (a missing static folder, a deprecation) become log records too, so that
# every line on stderr is one the log tools can parse.
import logging  # noqa: E402

logging.captureWarnings(True)

# Error tracking: set SENTRY_DSN to send unhandled errors (with the Django integration: the
# request, the user id, the release) to Sentry or anything that speaks its protocol. Off by
# default; no personal data (IPs, cookies, bodies) is sent.
SENTRY_DSN = env_str("SENTRY_DSN", "")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        integrations=[DjangoIntegration()],
        environment=env_str("SENTRY_ENVIRONMENT", "production"),
        traces_sample_rate=float(env_str("SENTRY_TRACES_SAMPLE_RATE", "0")),
        send_default_pii=False,
    )

MIDDLEWARE[MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1 : 0] = [
    "config.middleware.RequestContextMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "config.middleware.PermissionsPolicyMiddleware",
]
TEMPLATES[0]["OPTIONS"]["context_processors"].append("django.template.context_processors.csp")


def _media_origins(storage: dict) -> list[str]:
    """Where public photos are served from, for img-src: this site, or the S3 server."""
    if "s3" not in storage["BACKEND"].lower():
        return []
    options = storage.get("OPTIONS", {})
    if options.get("custom_domain"):
        return [f"{options.get('url_protocol', 'https:')}//{options['custom_domain']}"]
    if options.get("endpoint_url"):
        from urllib.parse import urlsplit

        url = urlsplit(options["endpoint_url"])
        return [f"{url.scheme}://{url.netloc}"]
    return ["https://*.amazonaws.com"]


# Content Security Policy (Django's own middleware): scripts and styles from this site only,
# inline ones only with the response's nonce ({% csp_nonce_attr %}), images from this site and
# the public photo storage, nothing embeds the site. DJANGO_CSP_REPORT_URI: where browsers
# report violations.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, *_media_origins(STORAGES["default"])],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
if env_str("DJANGO_CSP_REPORT_URI", ""):
    SECURE_CSP["report-uri"] = [env_str("DJANGO_CSP_REPORT_URI", "")]
# Django's defaults, stated: links to other sites carry no path, and no page opened from here
# (or that opens one of ours) keeps a handle on the other's window.
SECURE_REFERRER_POLICY = env_str("DJANGO_REFERRER_POLICY", "same-origin")
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Powerful browser features no page of this site uses: all denied (config/middleware.py).
PERMISSIONS_POLICY_DENY = [
    "accelerometer",
    "autoplay",
    "camera",
    "display-capture",
    "geolocation",
    "gyroscope",
    "magnetometer",
    "microphone",
    "payment",
    "usb",
]
# === end of operations =========================================================================
