"""Production configuration: deploy checks pass, secrets come from the environment, strong hashing."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "DJANGO_SETTINGS_MODULE", "YILIAN_SECURE"}
    }
    base.update(env)
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_deploy_passes_in_production_configuration(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text(secrets.token_urlsafe(50))
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={"SECRET_KEY_FILE": str(key_file), "ALLOWED_HOSTS": "yilian.example.org", "YILIAN_VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret(tmp_path):
    result = run_manage("check", env={"YILIAN_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_settings_hash_with_argon2_and_keep_debug_off(tmp_path):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='yilian.settings'; django.setup();"
        "from django.conf import settings; from django.contrib.auth.hashers import make_password;"
        "print(settings.DEBUG, make_password('x').split('$')[0], settings.TIME_ZONE, settings.LANGUAGE_CODE)"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DJANGO_SETTINGS_MODULE", "YILIAN_SECURE"}}
    env.update({"SECRET_KEY": secrets.token_urlsafe(50), "YILIAN_VAR_DIR": str(tmp_path)})
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)  # noqa: S603
    assert out.stdout.split() == ["False", "argon2", "Asia/Shanghai", "zh-hans"]


def test_postgresql_prepares_statements_unless_turned_off(tmp_path):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='yilian.settings'; django.setup();"
        "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'].get('prepare_threshold', 'unset'))"
    )
    seen = []
    for database, threshold in (
        ("postgres://u@127.0.0.1:5432/x", None),
        ("postgres://u@127.0.0.1:5432/x", "none"),
        ("postgres://u@127.0.0.1:5432/x", "3"),
        (f"sqlite:///{tmp_path}/x.sqlite3", None),
    ):
        env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DJANGO_SETTINGS_MODULE", "DB_PREPARE_THRESHOLD"}}
        env.update({"SECRET_KEY": secrets.token_urlsafe(50), "YILIAN_VAR_DIR": str(tmp_path), "DATABASE_URL": database})
        if threshold is not None:
            env["DB_PREPARE_THRESHOLD"] = threshold
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)  # noqa: S603
        seen.append(out.stdout.strip())
    assert seen == ["0", "None", "3", "unset"]
