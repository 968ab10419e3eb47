"""Every live channel backend pointed at local fakes: a real SMTP server, Twilio and FCM at the transport.

Use the `live_channels` fixture (import it into a test module) to run anything that sends email, SMS and
push — the backends themselves or the daily run — fully offline, then read what each provider received (every
request, refused ones included). `refusals` scripts a provider's answer for one phone number or push token.
"""

import functools
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.notifications.smtp import Inbox, SmtpServer

TWILIO_SID = "AC" + "f" * 32
TWILIO_URL = f"https://twilio.test/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
FCM_TOKEN_URI = "https://oauth2.test/token"
FCM_SEND_URL = "https://fcm.test/v1/projects/fake-project/messages:send"


@dataclass
class LiveChannels:
    inbox: Inbox
    sms: list[dict[str, str]] = field(default_factory=list)
    pushes: list[dict] = field(default_factory=list)
    # Scripted refusals: recipient (phone number or push token) -> (HTTP status, JSON body) the provider answers.
    refusals: dict[str, tuple[int, dict]] = field(default_factory=dict)


@functools.cache
def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def live_channels(settings, tmp_path):
    key_file = tmp_path / "fcm-service-account.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "fake-project",
                "private_key_id": "fake-key",
                "private_key": _private_key_pem(),
                "client_email": "sender@fake-project.iam.gserviceaccount.com",
                "token_uri": FCM_TOKEN_URI,
            }
        )
    )
    with SmtpServer() as smtp, responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        channels = LiveChannels(inbox=smtp.inbox)

        def twilio(request):
            form = {key: values[0] for key, values in parse_qs(request.body).items()}
            channels.sms.append(form)
            if form["To"] in channels.refusals:
                status, body = channels.refusals[form["To"]]
                return status, {}, json.dumps(body)
            return 201, {}, json.dumps({"sid": f"SM{len(channels.sms):032d}", "status": "queued"})

        def fcm(request):
            payload = json.loads(request.body)
            channels.pushes.append(payload)
            if payload["message"]["token"] in channels.refusals:
                status, body = channels.refusals[payload["message"]["token"]]
                return status, {}, json.dumps(body)
            return 200, {}, json.dumps({"name": f"projects/fake-project/messages/{len(channels.pushes)}"})

        mock.add_callback(responses.POST, TWILIO_URL, callback=twilio)
        mock.add_callback(responses.POST, FCM_SEND_URL, callback=fcm)
        mock.post(FCM_TOKEN_URI, json={"access_token": "fake-access-token", "expires_in": 3600})
        settings.EMAIL_CHANNEL = "django"
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.PUBLIC_BASE_URL = "https://engage.example.com"
        settings.DEFAULT_FROM_EMAIL = "hello@mail.example.com"
        settings.SMS_CHANNEL = "twilio"
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = TWILIO_SID, "fake-auth-token"
        settings.TWILIO_FROM_NUMBER, settings.TWILIO_MESSAGING_SERVICE_SID = "+15005550006", ""
        settings.TWILIO_API_BASE = "https://twilio.test"
        settings.PUSH_CHANNEL = "fcm"
        settings.FCM_CREDENTIALS, settings.FCM_PROJECT_ID = str(key_file), ""
        settings.FCM_API_BASE = "https://fcm.test"
        settings.TWILIO_RATE_LIMIT = settings.FCM_RATE_LIMIT = 0
        yield channels
