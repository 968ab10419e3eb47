"""`manage.py check --deploy` against a production environment configured as docs/operations.md says.

It runs in a subprocess because settings are read from the environment once, at start-up.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
# Anything the developer's or CI's environment sets that would change what production looks like.
CLEARED = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
    "CSRF_TRUSTED_ORIGINS",
    "WALLET_CHANNEL",
    "EMAIL_CHANNEL",
    "SMS_CHANNEL",
    "PUSH_CHANNEL",
    "EMAIL_URL",
)


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    """Production settings with real backends; credentials are dummies (the check validates presence, not use)."""
    fcm_key = tmp_path / "firebase-service-account.json"
    fcm_key.write_text(json.dumps({"type": "service_account", "project_id": "example-project"}))
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "q8Vr2-Lw0ZtXc9Hn4Jp7Ks1Md6Fb3Gy5Ue8Ai0Oo2Ti4Rn6Sm9Wd1Xf3Ce5Bg7Hj!",
            "ALLOWED_HOSTS": "engage.example.com",
            "CSRF_TRUSTED_ORIGINS": "https://engage.example.com",
            "SECURE_HSTS_PRELOAD": "true",
            "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
            "LOG_FORMAT": "json",
            "WALLET_CHANNEL": "live",
            "APPLE_PASS_TYPE_ID": "pass.com.example.loyalty",
            "WALLET_WEB_SERVICE_URL": "https://engage.example.com/wallet/apple",
            "EMAIL_CHANNEL": "django",
            "EMAIL_URL": "smtp+tls://apikey:dummy@smtp.example.com:587",
            "DEFAULT_FROM_EMAIL": "hello@mail.example.com",
            "PUBLIC_BASE_URL": "https://engage.example.com",
            "SMS_CHANNEL": "twilio",
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": "dummy-auth-token",
            "TWILIO_FROM_NUMBER": "+14155550100",
            "PUSH_CHANNEL": "fcm",
            "FCM_CREDENTIALS": str(fcm_key),
        }
    )
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_with_no_issue(production_env):
    result = check_deploy(production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_secure_defaults_follow_debug(production_env):
    code = (
        "from django.conf import settings as s; import json; print(json.dumps([s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_PROXY_SSL_HEADER, s.CSRF_TRUSTED_ORIGINS]))"
    )

    def read(env):
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    # Empty values, as .env.example leaves them, mean the defaults.
    assert read({**production_env, "SECURE_SSL_REDIRECT": "", "SECURE_HSTS_SECONDS": ""}) == [
        True,
        31_536_000,
        True,
        True,
        True,
        ["HTTP_X_FORWARDED_PROTO", "https"],
        ["https://engage.example.com"],
    ]
    development = {**production_env, "DEBUG": "true"}
    del development["SECURE_PROXY_SSL_HEADER"], development["CSRF_TRUSTED_ORIGINS"]
    assert read(development) == [False, 0, False, False, False, None, []]


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SESSION_COOKIE_SECURE": "false"}, "security.W012"),
        ({"SECRET_KEY": "too-short"}, "security.W009"),
        ({"SMS_CHANNEL": "record"}, "notifications.W001"),
    ],
)
def test_each_missing_piece_is_reported(production_env, change, warning):
    result = check_deploy({**production_env, **change})
    assert result.returncode != 0
    assert warning in result.stdout + result.stderr
