import json

import pytest
from django.core.checks import run_checks


@pytest.fixture(autouse=True)
def production(settings):
    settings.DEBUG = False
    for setting in ("WALLET_CHANNEL", "EMAIL_CHANNEL", "SMS_CHANNEL", "PUSH_CHANNEL"):
        setattr(settings, setting, "record")


def ours() -> list[tuple[str, str]]:
    return sorted((message.id, message.obj) for message in run_checks() if message.id.startswith("notifications."))


def test_every_record_channel_warns_when_debug_is_off():
    assert ours() == [
        ("notifications.W001", "EMAIL_CHANNEL"),
        ("notifications.W001", "PUSH_CHANNEL"),
        ("notifications.W001", "SMS_CHANNEL"),
        ("notifications.W001", "WALLET_CHANNEL"),
    ]


def test_record_is_fine_in_development(settings):
    settings.DEBUG = True
    assert ours() == []


def test_a_configured_live_backend_is_quiet(settings, tmp_path):
    settings.SMS_CHANNEL = "twilio"
    settings.TWILIO_ACCOUNT_SID = "AC123"
    settings.TWILIO_AUTH_TOKEN = "secret"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.PUSH_CHANNEL = "fcm"
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"type": "service_account", "project_id": "demo"}))
    settings.FCM_CREDENTIALS = str(key_file)
    settings.EMAIL_CHANNEL = "django"
    settings.PUBLIC_BASE_URL = "https://engage.example.com"
    settings.DEFAULT_FROM_EMAIL = "hello@example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert ours() == [("notifications.W001", "WALLET_CHANNEL")]


def test_missing_twilio_settings_are_errors(settings):
    settings.SMS_CHANNEL = "twilio"
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_FROM_NUMBER = ""
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    messages = [m for m in run_checks() if m.id == "notifications.E002"]
    text = " ".join(m.msg for m in messages)
    assert len(messages) == 3
    assert all(m.is_serious() for m in messages)
    assert "TWILIO_ACCOUNT_SID" in text and "TWILIO_AUTH_TOKEN" in text and "TWILIO_FROM_NUMBER" in text


def test_missing_or_bad_fcm_key_file_is_an_error(settings, tmp_path):
    settings.PUSH_CHANNEL = "fcm"
    settings.FCM_CREDENTIALS = str(tmp_path / "missing.json")
    [message] = [m for m in run_checks() if m.id == "notifications.E002"]
    assert "cannot read" in message.msg


def test_fcm_needs_a_project(settings, tmp_path):
    settings.PUSH_CHANNEL = "fcm"
    settings.FCM_PROJECT_ID = ""
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"type": "service_account"}))
    settings.FCM_CREDENTIALS = str(key_file)
    [message] = [m for m in run_checks() if m.id == "notifications.E002"]
    assert "FCM_PROJECT_ID" in message.msg


def test_email_needs_a_public_base_url_and_a_sending_backend(settings):
    settings.EMAIL_CHANNEL = "django"
    settings.PUBLIC_BASE_URL = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    assert ("notifications.E002", "EMAIL_CHANNEL") in ours()
    assert ("notifications.W002", "EMAIL_URL") in ours()


def test_an_unknown_backend_is_an_error(settings):
    settings.SMS_CHANNEL = "carrier-pigeon"
    assert ("notifications.E001", "SMS_CHANNEL") in ours()


def test_a_dotted_path_to_a_custom_backend_is_accepted(settings):
    settings.SMS_CHANNEL = "notifications.backends.base.ChannelBackend"
    assert ("notifications.E001", "SMS_CHANNEL") not in ours()
    assert ("notifications.W001", "SMS_CHANNEL") not in ours()


@pytest.mark.parametrize(
    ("channel_setting", "choice", "url_setting"),
    [("EMAIL_CHANNEL", "django", "PUBLIC_BASE_URL"), ("WALLET_CHANNEL", "live", "WALLET_WEB_SERVICE_URL")],
)
def test_a_plain_http_url_that_the_protocol_wants_https_is_an_error(settings, channel_setting, choice, url_setting):
    setattr(settings, channel_setting, choice)
    setattr(settings, url_setting, "http://engage.example.com/")
    assert ("notifications.E003", url_setting) in ours()
    setattr(settings, url_setting, "https://engage.example.com/")
    assert ("notifications.E003", url_setting) not in ours()
    settings.DEBUG = True
    setattr(settings, url_setting, "http://localhost:8000/")
    assert ("notifications.E003", url_setting) not in ours()
