"""Settings for the test suite: the real settings with a fixed key and a fast hasher."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("YILIAN_SECURE", "0")

from yilian.settings import *  # noqa: F403

# Argon2 is deliberately slow; tests create many users. test_security checks production uses Argon2.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
WHITENOISE_USE_FINDERS = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not shared-cache memory: WAL and IMMEDIATE transactions then behave as in production
    # (shared-cache memory databases use table locks that ignore the busy timeout).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}  # noqa: F405

# WhiteNoise warns when STATIC_ROOT is missing; tests serve from the finders, so an empty one will do.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
