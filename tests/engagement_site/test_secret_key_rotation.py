"""Rotating SECRET_KEY as docs/operations.md says: the old key moves to SECRET_KEY_FALLBACKS in the environment, and
unsubscribe links signed with it keep working in the new process."""

import os
import subprocess
import sys

from tests.processes import PROJECT

OLD_KEY = "old-key-3f9a8c1e7b2d4f6a0c5e9b1d3f7a2c4e6b8d0f1a"
NEW_KEY = "new-key-9e1c3a5f7b9d2e4f6a8c0b1d3e5f7a9c2b4d6e8f"
SIGN = (
    "import django; django.setup(); from notifications.unsubscribe import make_unsubscribe_token as make; "
    "print(make(customer_id='cus_Example01', channel='email'))"
)
READ = (
    "import django, sys; django.setup(); from notifications.unsubscribe import read_unsubscribe_token as read; "
    "print(read(token=sys.argv[1]).customer_id)"
)


def _python(code: str, *args: str, **environment: str) -> subprocess.CompletedProcess:
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("SECRET_KEY")}
    env = {**inherited, "DEBUG": "false", "DJANGO_SETTINGS_MODULE": "engagement_site.settings", **environment}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=PROJECT, env=env, capture_output=True, text=True)


def test_links_signed_with_a_fallback_key_still_unsubscribe():
    signed = _python(SIGN, SECRET_KEY=OLD_KEY)
    assert signed.returncode == 0, signed.stderr
    token = signed.stdout.strip()

    rotated = _python(READ, token, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=f"unrelated-key,{OLD_KEY}")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip() == "cus_Example01"

    forgotten = _python(READ, token, SECRET_KEY=NEW_KEY)
    assert forgotten.returncode != 0
    assert "InvalidUnsubscribeToken" in forgotten.stderr
