"""For tests that start the project's own commands in processes of their own: where the project is, and the URL of
the test database those processes must use (the same one the test writes to)."""

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import connection

if TYPE_CHECKING:
    from tests.faults.standins import TwilioStandIn

PROJECT = Path(__file__).resolve().parents[1]


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def run_command_workers(count: int, *, now: dt.datetime, environment: Mapping[str, str]) -> list[dict]:
    """`count` run_auto_engagement processes started together on the test database (with `environment` on top of
    the project's test settings), each required to succeed; their JSON summaries."""
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "true", "LOG_LEVEL": "WARNING", **environment}
    command = [sys.executable, "manage.py", "run_auto_engagement", "--now", now.isoformat(), "--format", "json"]
    processes = [
        subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    summaries = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    return summaries


def twilio_environment(standin: "TwilioStandIn") -> dict[str, str]:
    """The settings that point the SMS channel at a Twilio stand-in, with no rate limit."""
    return {
        "SMS_CHANNEL": "twilio",
        "TWILIO_API_BASE": standin.base_url,
        "TWILIO_ACCOUNT_SID": standin.account_sid,
        "TWILIO_AUTH_TOKEN": standin.auth_token,
        "TWILIO_FROM_NUMBER": standin.from_number,
        "TWILIO_RATE_LIMIT": "0",
        "CHANNEL_HTTP_TIMEOUT": "10",
    }
