"""Yilian settings: one module, driven by the environment.

Environment variables:
- DATABASE_URL: defaults to the embedded SQLite file var/yilian.sqlite3.
- SECRET_KEY, or SECRET_KEY_FILE naming a file that holds it. Required unless DEBUG is on.
- DEBUG: "1" only for the demo and development; off by default.
- ALLOWED_HOSTS: comma-separated; defaults to localhost names.
- YILIAN_SECURE: "1" behind TLS (secure cookies, HSTS, HTTPS redirect), the production default.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("YILIAN_VAR_DIR", BASE_DIR / "var"))


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_flag("DEBUG")


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    if path := os.environ.get("SECRET_KEY_FILE"):
        return Path(path).read_text(encoding="utf-8").strip()
    if DEBUG:
        return "django-insecure-yilian-demo-only-do-not-use-in-production"
    raise ImproperlyConfigured("Set SECRET_KEY or SECRET_KEY_FILE (or DEBUG=1 for the demo).")


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tasks",
    "django_tasks_db",
    "ninja",  # its templates and static files: the API docs page uses local Swagger UI, not a CDN
    "yilian.core",
    "yilian.organizations",
    "yilian.accounts",
    "yilian.patients",
    "yilian.records",
    "yilian.interop",
    "yilian.portal",
    "yilian.scheduling",
    "yilian.referrals",
    "yilian.access",
    "yilian.notifications",
    "yilian.web",
    "yilian.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "yilian.web.locale_middleware.ChineseFirstLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "yilian.accounts.middleware.ActorMiddleware",
]

ROOT_URLCONF = "yilian.urls"
WSGI_APPLICATION = "yilian.wsgi.application"
ASGI_APPLICATION = "yilian.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "yilian" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "yilian.web.context_processors.shell",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'yilian.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside one writer; IMMEDIATE transactions take the write lock up
    # front so concurrent writers queue (up to the timeout) instead of failing mid-transaction.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The busiest plain-SQL statements (core.rows.statement_cursor) bind on the server and are
    # prepared at their first run on a connection, so PostgreSQL plans each once; Django's ORM
    # cursors bind on the client and are never prepared. DB_PREPARE_THRESHOLD=none turns it off
    # (a pooler in transaction mode without prepared-statement support).
    _prepare = os.environ.get("DB_PREPARE_THRESHOLD", "0").strip().lower()
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "prepare_threshold", None if _prepare in {"", "none", "off"} else int(_prepare)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Passwords, login, sessions -------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "accounts:login"
SESSION_COOKIE_AGE = 8 * 60 * 60  # one working shift
# Django's database sessions and ModelBackend, reading their row in plain SQL (yilian/accounts/sessions.py).
SESSION_ENGINE = "yilian.accounts.sessions"
AUTHENTICATION_BACKENDS = ["yilian.accounts.sessions.AuthBackend"]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

SECURE = env_flag("YILIAN_SECURE", default=not DEBUG)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE
SECURE_HSTS_SECONDS = 31536000 if SECURE else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Lockout after repeated failed logins (accounts.services.authenticate_with_lockout).
LOGIN_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_LOCKOUT_MINUTES = int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15"))

# Break-glass access may last at most this many hours (access.services).
BREAK_GLASS_MAX_HOURS = int(os.environ.get("BREAK_GLASS_MAX_HOURS", "4"))

# Text messages go through this gateway (notifications.sms); the console one prints them (demo, tests).
YILIAN_SMS_GATEWAY = os.environ.get("YILIAN_SMS_GATEWAY", "yilian.notifications.sms.ConsoleSmsGateway")

# The resident portal (portal.services): one-time sign-in codes and resident sessions.
PORTAL_CODE_MINUTES = 5  # a code is valid this long
PORTAL_CODE_ATTEMPTS = 5  # wrong entries before a code is dead
PORTAL_RESEND_SECONDS = 60  # at most one code per phone and ID number in this interval
PORTAL_CODES_PER_HOUR = 5  # and at most this many an hour
PORTAL_SESSION_IDLE_MINUTES = int(os.environ.get("PORTAL_SESSION_IDLE_MINUTES", "15"))
PORTAL_SESSION_MAX_HOURS = int(os.environ.get("PORTAL_SESSION_MAX_HOURS", "2"))

# --- Request limits: oversized bodies get a 400/413, never a 500 ---------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "yilian" / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- Static files: front-end packages come from npm (package-lock.json), served by the app --
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "yilian" / "static",
    ("vendor/htmx", NODE_MODULES / "htmx.org" / "dist"),
    ("vendor/bootstrap", NODE_MODULES / "bootstrap" / "dist"),
    ("vendor/bootstrap-icons", NODE_MODULES / "bootstrap-icons" / "font"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Background work ------------------------------------------------------------------------
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# --- API ------------------------------------------------------------------------------------
API_MAX_PAGE_SIZE = 100
API_DEFAULT_PAGE_SIZE = 20

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Referral (双向转诊): minutes to accept, and minutes until an unanswered referral expires, per urgency
# (a consortium overrides them in ReferralDeadline); the receiver's grant lasts REFERRAL_GRANT_DAYS and
# ends REFERRAL_GRANT_AFTER_COMPLETION_DAYS after completion; an accepted referral whose patient does
# not come expires REFERRAL_ARRIVAL_GRACE_DAYS after the appointment.
REFERRAL_DEADLINES = {
    "emergency": (30, 4 * 60),
    "urgent": (4 * 60, 48 * 60),
    "routine": (48 * 60, 14 * 24 * 60),
}
REFERRAL_GRANT_DAYS = 30
# A booked slot or reserved bed opens the patient's summary to the receiving institution until this
# many days after the slot ends or the reservation expires (scheduling.services).
SCHEDULING_GRANT_DAYS = 7
REFERRAL_GRANT_AFTER_COMPLETION_DAYS = 7
REFERRAL_ARRIVAL_GRACE_DAYS = 7
