"""A provider's settings are read from the environment only when its channel chooses it: a stray or malformed
value for a provider not in use cannot stop the service, and a chosen provider's values are read as set."""

import json
import os
import subprocess
import sys

import pytest

from tests.processes import PROJECT

READ = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.TWILIO_RATE_LIMIT, s.TWILIO_FROM_NUMBER, s.FCM_RATE_LIMIT, s.CHANNEL_HTTP_TIMEOUT]))"
)
PROVIDER_VALUES = {
    "TWILIO_RATE_LIMIT": "2.5",
    "TWILIO_FROM_NUMBER": "+14155550100",
    "FCM_RATE_LIMIT": "50",
    "CHANNEL_HTTP_TIMEOUT": "3",
}


def _settings_read(**environment: str) -> subprocess.CompletedProcess:
    cleared = {key: value for key, value in os.environ.items() if not key.endswith("_CHANNEL")}
    env = {**cleared, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "engagement_site.settings", **environment}
    return subprocess.run([sys.executable, "-c", READ], cwd=PROJECT, env=env, capture_output=True, text=True)


def test_providers_not_chosen_keep_their_defaults_whatever_the_environment_says():
    finished = _settings_read(**{**PROVIDER_VALUES, "TWILIO_RATE_LIMIT": "not-a-number"}, SMS_CHANNEL="record")
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout) == [10.0, "", 200.0, 10.0]


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ({"SMS_CHANNEL": "twilio"}, [2.5, "+14155550100", 200.0, 3.0]),
        ({"PUSH_CHANNEL": "fcm"}, [10.0, "", 50.0, 3.0]),
        ({"SMS_CHANNEL": "notifications.backends.twilio.TwilioSmsBackend"}, [2.5, "+14155550100", 200.0, 3.0]),
    ],
)
def test_a_chosen_provider_reads_its_settings(channels, expected):
    finished = _settings_read(**PROVIDER_VALUES, **channels)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout) == expected


def test_a_malformed_value_for_the_chosen_provider_still_stops_it():
    finished = _settings_read(SMS_CHANNEL="twilio", TWILIO_RATE_LIMIT="not-a-number")
    assert finished.returncode != 0
    assert "ValueError: could not convert string to float" in finished.stderr
