"""Tablo settings.

Every value that differs between environments comes from ``config.env`` (the
process environment, read once, typed). With no variables set the project runs
on embedded defaults: SQLite under ``var/`` and local file storage under
``var/media``. ``DATABASE_URL`` switches to PostgreSQL, ``S3_BUCKET`` to S3.
The README's configuration table lists every variable.
"""

from __future__ import annotations

from typing import Any

import django_stubs_ext
from django.utils.csp import CSP

from config.env import (
    BASE_DIR,
    VAR_DIR,
    env,
    required_in_production,
    secret_key,
    trace_exporters,
)
from config.logging import build_logging

# ModelAdmin[Job], Paginator[Job]...: the type arguments mypy checks, accepted at run time.
django_stubs_ext.monkeypatch()

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = secret_key(debug=DEBUG)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [],
)
if not DEBUG and not ALLOWED_HOSTS:
    required_in_production("DJANGO_ALLOWED_HOSTS", debug=DEBUG, default="")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # Before django_q: its management commands (qinfo, without secrets) win.
    "jobs",
    "django_q",
    "django_structlog",
    "accounts",
    "tablos",
    "files",
]

MIDDLEWARE = [
    # First: the web app's request metrics for /metrics, timed around everything below.
    "config.request_metrics.RequestMetrics",
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.RejectNulInAddress",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Content-Security-Policy on every response (SECURE_CSP below).
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Right before django-structlog: an upstream request id that is not a plain id is dropped.
    "config.middleware.RequestIdGuard",
    # After authentication so the user id is bound too; binds request_id.
    "django_structlog.middlewares.RequestMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "db.sqlite3"
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    _db["OPTIONS"] = {
        # A web process and a worker write at once: WAL lets readers run during a
        # write, IMMEDIATE takes the write lock at BEGIN (no upgrade deadlock that
        # busy_timeout cannot resolve), and `timeout` waits for the lock instead
        # of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_BUSY_TIMEOUT_SECONDS", default=20),
        "init_command": (
            "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA foreign_keys=ON;"
        ),
    }
    # Tests that start a real worker process need a file both processes can open.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    # Stock settings reconnect on every async_task() and every broker poll; keep
    # connections and check them before reuse instead.
    _db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=600)
    _db["CONN_HEALTH_CHECKS"] = True
    # A cut network link fails a query within seconds instead of TCP's ~15 minutes
    # of retransmissions, so a worker node notices it lost the database.
    _db.setdefault("OPTIONS", {}).update(
        connect_timeout=env.int("DATABASE_CONNECT_TIMEOUT", default=10),
        tcp_user_timeout=env.int("DATABASE_TCP_USER_TIMEOUT_MS", default=20000),
    )

# --- Storage --------------------------------------------------------------
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

S3_BUCKET = env.str("S3_BUCKET", default="")
FILE_DOWNLOAD_EXPIRY_SECONDS = env.int("FILE_DOWNLOAD_EXPIRY_SECONDS", default=300)
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env.str("S3_ENDPOINT_URL", default="") or None,
            "access_key": env.str("S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("S3_SECRET_ACCESS_KEY", default="") or None,
            "region_name": env.str("S3_REGION", default="us-east-1"),
            "addressing_style": "path" if env.bool("S3_USE_PATH_STYLE", default=False) else None,
            "signature_version": "s3v4",
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": FILE_DOWNLOAD_EXPIRY_SECONDS,
            # Keys are unique per upload; never silently rename or overwrite.
            "file_overwrite": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
FILE_UPLOAD_MAX_BYTES = env.int("FILE_UPLOAD_MAX_BYTES", default=25 * 1024 * 1024)
# Uploads above this are streamed to a temporary file rather than held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
ORPHAN_GRACE_SECONDS = env.int("ORPHAN_GRACE_SECONDS", default=24 * 3600)

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tablos:list"
LOGOUT_REDIRECT_URL = "login"
# Sign-up (accounts): a new account stays inactive until the signed link mailed to
# it is opened; the link expires after this long. Password reset links expire after
# PASSWORD_RESET_TIMEOUT (Django's own setting, same value by default).
ACCOUNT_CONFIRMATION_MAX_AGE_SECONDS = env.int(
    "ACCOUNT_CONFIRMATION_MAX_AGE_SECONDS", default=3 * 24 * 3600
)
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT_SECONDS", default=3 * 24 * 3600)

# --- Mail -------------------------------------------------------------------
# One URL (django-environ's email_url): smtp+tls://user:password@host:587 in
# production; the console backend (mails printed by the web process) otherwise
# (set EMAIL_URL in production, or links reach nobody).
_mail = env.email_url("EMAIL_URL", default="consolemail://")
_mail_options: dict[str, Any] = {}
if _mail["EMAIL_BACKEND"].endswith(".smtp.EmailBackend"):
    _mail_options = {
        "host": _mail.get("EMAIL_HOST") or "localhost",
        "port": _mail.get("EMAIL_PORT") or 25,
        "username": _mail.get("EMAIL_HOST_USER") or "",
        "password": _mail.get("EMAIL_HOST_PASSWORD") or "",
        "use_tls": bool(_mail.get("EMAIL_USE_TLS", False)),
        "use_ssl": bool(_mail.get("EMAIL_USE_SSL", False)),
        "timeout": env.int("EMAIL_TIMEOUT_SECONDS", default=10),
    }
elif _mail["EMAIL_BACKEND"].endswith(".filebased.EmailBackend"):
    _mail_options = {"file_path": _mail.get("EMAIL_FILE_PATH") or str(VAR_DIR / "mail")}
MAILERS = {"default": {"BACKEND": _mail["EMAIL_BACKEND"], "OPTIONS": _mail_options}}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Tablo <noreply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Dates on pages and in the admin name their time zone (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]

# --- Security (production) ------------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Django's Content-Security-Policy. Pages and the admin load scripts and styles from our
# own static files only; style attributes (the admin uses a few) are the one inline
# thing allowed.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "style-src-attr": [CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS preload is a commitment to the browsers' list: opt in with
# DJANGO_SECURE_HSTS_PRELOAD=true, so its warning (W021) is silenced by default.
SILENCED_SYSTEM_CHECKS = env.list(
    "DJANGO_SILENCED_SYSTEM_CHECKS", default=[] if SECURE_HSTS_PRELOAD else ["security.W021"]
)

# --- Tracing (OpenTelemetry; jobs/tracing.py, docs/tracing.md) ---------------
# Only the standard OTEL_* variables: off unless OTEL_TRACES_EXPORTER names an exporter.
TRACE_EXPORTERS = trace_exporters()
TRACING_ENABLED = bool(TRACE_EXPORTERS)

# --- Logging --------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if DEBUG else "json")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = build_logging(json=LOG_FORMAT == "json", level=LOG_LEVEL, trace_ids=TRACING_ENABLED)
DJANGO_STRUCTLOG_CELERY_ENABLED = False
# Keep the X-Request-ID a proxy or client sent, so one id follows a request end to end.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = env.bool("LOG_TRUST_REQUEST_ID", default=True)

# --- Cache ------------------------------------------------------------------
# Shared by every process (web, scheduler, workers): django-q2's cached=True
# results, async_iter and the qinfo/qmonitor statistics live here. The database
# cache by default (its table is created on migrate); Redis when a URL is set.
CACHE_REDIS_URL = env.str("CACHE_REDIS_URL", default="")
if CACHE_REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_REDIS_URL,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "tablo_cache",
            # Past MAX_ENTRIES Django deletes a third of the entries, expired or not:
            # a cached=True result or an async_iter's member would vanish (300 by default).
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }

# --- Worker (django-q2) ---------------------------------------------------
# Tasks go through the jobs.Job table (jobs.engine.broker.DatabaseBroker: SKIP LOCKED
# claims, LISTEN/NOTIFY on PostgreSQL; docs/broker.md).
# A claimed task belongs to its worker node until that node stops or is declared
# dead (jobs.engine.nodes): there is no redelivery delay to set.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=300)
Q_BULK = env.int("Q_BULK", default=10)
Q_CLUSTER = {
    # The site's name, also django-q2's signing salt: every process of one
    # deployment (web and workers) shares it, or queued payloads fail their
    # signature. The queue a worker serves is a separate name: django-q2 reads
    # Q_CLUSTER_NAME from the environment itself (default: this name), so a
    # worker for a job declared with cluster="reports" runs with
    # Q_CLUSTER_NAME=reports and still reads what the web processes signed.
    "name": env.str("Q_SITE_NAME", default="tablo"),
    # django-q2 pops this key whenever Q_CLUSTER_NAME differs from the name.
    "ALT_CLUSTERS": {},
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    # Read by nothing here; django-q2 logs a warning unless it is above the timeout.
    "retry": Q_TIMEOUT + 60,
    # Retries and dead tasks are ours (jobs.failures): django-q2 never
    # acknowledges a failure or stops counting on its own.
    "max_attempts": 0,
    "ack_failures": False,
    # Results are kept (django_q.models.Task), written by the workers in batches with
    # the finished rows (jobs.engine.results); 0 stops django-q2's sync mode pruning on
    # every save: jobs.prune_results prunes in the background (JOBS_RESULTS_* below).
    "save_limit": 0,
    # The most rows a worker claims at once (it claims one while tasks are slow).
    "bulk": Q_BULK,
    # With LISTEN/NOTIFY an enqueue wakes an idle worker at once: `poll` is only the
    # fallback wait (due retries, a lost notification) and bounds shutdown delay.
    "poll": env.float("Q_POLL", default=1.0),
    # A worker process is replaced after this many tasks (leak guard); each
    # replacement is a fork and a warm-up, a cost a low value pays on every few tasks.
    "recycle": env.int("Q_RECYCLE", default=5000),
    "catch_up": False,
    # django-q2 names its admin section after this label; ours is "Jobs".
    "label": env.str("Q_CLUSTER_LABEL", default="Task queue (django-q2)"),
    # The queue is on "default", with the application data (jobs.E003).
    "orm": "default",
    "broker_class": "jobs.engine.broker.DatabaseBroker",
}

# Kept task results (django-q2's Successful tasks): pruned every few minutes to
# the newest JOBS_RESULTS_MAX_ROWS successes and to JOBS_RESULTS_MAX_AGE_HOURS
# (failures too); 0 turns a limit off.
JOBS_RESULTS_MAX_ROWS = env.int("JOBS_RESULTS_MAX_ROWS", default=100_000)
JOBS_RESULTS_MAX_AGE_HOURS = env.int("JOBS_RESULTS_MAX_AGE_HOURS", default=7 * 24)
# The queue table is vacuumed by the jobs.vacuum_queue job (every minute) once it
# holds this many dead row versions and autovacuum has not reclaimed them; 0: never.
JOBS_QUEUE_VACUUM_DEAD_ROWS = env.int("JOBS_QUEUE_VACUUM_DEAD_ROWS", default=20_000)
# Variables operators may still set from older releases: `manage.py check` names them.
JOBS_RETIRED_ENV = [
    name for name in ("Q_SAVE_LIMIT", "QUEUE_REDIS_URL", "Q_RETRY") if env.str(name, default="")
]

# Worker nodes (jobs.engine.nodes): each qcluster beats this often; a node silent for
# JOBS_NODE_DEAD_AFTER_SECONDS (or whose process is gone from this machine) is
# declared dead and its tasks are handed out again.
JOBS_NODE_HEARTBEAT_SECONDS = env.float("JOBS_NODE_HEARTBEAT_SECONDS", default=2.0)
JOBS_NODE_DEAD_AFTER_SECONDS = env.float("JOBS_NODE_DEAD_AFTER_SECONDS", default=15.0)
# A task's return value is kept as its result (pickled) up to this size; a larger
# one fails the attempt with an error that says so (0: no limit).
JOBS_RESULT_MAX_BYTES = env.int("JOBS_RESULT_MAX_BYTES", default=1024 * 1024)
# One INFO line per successful task ("task finished"); off, a success is logged at
# DEBUG only (its result row keeps when and how long). Failures are always logged.
JOBS_LOG_SUCCESSES = env.bool("JOBS_LOG_SUCCESSES", default=False)
# Django's Tasks log every start and finish at INFO ("Task id=... state=..."): as for
# "task finished", only with JOBS_LOG_SUCCESSES; a task that ends FAILED logs at ERROR.
LOGGING["loggers"]["django.tasks"] = {"level": "INFO" if JOBS_LOG_SUCCESSES else "WARNING"}
# Flow control per queue (jobs.engine.limits): "queue=N,other=M", at most N tasks of the
# queue running at once across every node (per-job limits are declared with @job).
JOBS_QUEUE_CONCURRENCY = env.dict("JOBS_QUEUE_CONCURRENCY", cast={"value": int}, default={})
HEARTBEAT_INTERVAL_SECONDS = env.int("HEARTBEAT_INTERVAL_SECONDS", default=60)
# Retries (jobs.failures): attempt**4 seconds +/-10%, capped, times the scale
# (tests and demos set a tiny scale, e.g. 0.01); per-job overrides in the registry.
JOBS_DEFAULT_MAX_ATTEMPTS = env.int("JOBS_DEFAULT_MAX_ATTEMPTS", default=20)
JOBS_BACKOFF_MAX_SECONDS = env.int("JOBS_BACKOFF_MAX_SECONDS", default=6 * 3600)
JOBS_BACKOFF_SCALE = env.float("JOBS_BACKOFF_SCALE", default=1.0)
JOBS_HISTORY_RETENTION_DAYS = env.int("JOBS_HISTORY_RETENTION_DAYS", default=14)
# A running task an operator cancels gets this long to stop on its own (it checks
# cancel_requested()) before its worker process is killed; a cancel may give its own.
JOBS_CANCEL_GRACE_SECONDS = env.int("JOBS_CANCEL_GRACE_SECONDS", default=30)

# --- Django's Tasks framework (django.tasks, Django 6+): @task on the same queue ---
# Each queue name is a Tablo queue: "default" is the site's (Q_SITE_NAME), any other
# is run by workers started with Q_CLUSTER_NAME=<name>. OPTIONS: the retry policy of
# every @task and per task path (jobs/django_tasks/options.py, docs/django_tasks.md).
TASKS = {
    "default": {
        "BACKEND": "jobs.django_tasks.TabloBackend",
        "QUEUES": env.list("TASKS_QUEUES", default=["default"]),
        "OPTIONS": {"tasks": {}},
    }
}
# Task arguments whose name is listed here are shown as **** on the task page and kept
# out of the searchable argument text (case-insensitive; keyword names, parameter names
# of positional arguments, and dictionary keys inside arguments).
JOBS_MASKED_ARGUMENTS = env.list(
    "JOBS_MASKED_ARGUMENTS",
    default=[
        "password", "passwd", "secret", "token", "api_key", "apikey", "access_token",
        "refresh_token", "authorization", "credentials", "private_key", "secret_key",
    ],
)  # fmt: skip
# Where the site is reached, for links printed outside a request (commands' --json).
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")

# --- Metrics (/metrics, Prometheus) -----------------------------------------
# Off unless one is set: a bearer token, or addresses/networks (CIDR) allowed
# without it. REMOTE_ADDR is used as is: behind a proxy, list the proxy's address.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
# prometheus_client reads it itself: with several web processes (gunicorn --workers)
# set it to an empty directory, and the request metrics of every process are merged.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
