"""Every live channel backend pointed at local providers: a real SMTP server, and the Twilio and FCM stand-ins of
tests/faults/standins.py (real HTTP servers that speak each provider's protocol; FCM's also issues the OAuth2 tokens).

Use the `live_channels` fixture (import it into a test module) to run anything that sends email, SMS and
push — the backends themselves or the daily run — fully offline, then read what each provider received (every
request, refused ones included). `refusals` scripts a provider's answer for one phone number or push token: every
request for it gets that answer.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.faults.conftest import service_account_key
from tests.faults.standins import DEFAULT_TWILIO_SID, FcmStandIn, Reply, TwilioStandIn
from tests.notifications.smtp import Inbox, SmtpServer

TWILIO_SID = DEFAULT_TWILIO_SID
FCM_PROJECT = "fake-project"


@dataclass
class LiveChannels:
    inbox: Inbox
    twilio: TwilioStandIn
    fcm: FcmStandIn
    sms: list[dict[str, str]] = field(default_factory=list)  # the form of every request Twilio received
    pushes: list[dict] = field(default_factory=list)  # the JSON body of every request FCM received
    # Scripted refusals: recipient (phone number or push token) -> (HTTP status, JSON body) the provider answers.
    refusals: dict[str, tuple[int, dict]] = field(default_factory=dict)


class _Refusals:
    """A stand-in that answers every request for a recipient in `refusals` with the refusal scripted for it."""

    refusals: dict[str, tuple[int, dict]]

    def next_fault(self, recipient: str) -> Any:
        fault = super().next_fault(recipient)
        if recipient in self.refusals:
            status, body = self.refusals[recipient]
            return Reply(status, body)
        return fault


class _Twilio(_Refusals, TwilioStandIn):
    pass


class _Fcm(_Refusals, FcmStandIn):
    pass


@pytest.fixture
def live_channels(settings, tmp_path):
    with SmtpServer() as smtp, _Twilio(account_sid=TWILIO_SID) as twilio, _Fcm(project_id=FCM_PROJECT) as fcm:
        channels = LiveChannels(inbox=smtp.inbox, twilio=twilio, fcm=fcm)
        twilio.refusals = fcm.refusals = channels.refusals
        twilio.on_request = lambda request: channels.sms.append(request.form())
        fcm.on_request = lambda request: channels.pushes.append(request.json())
        settings.EMAIL_CHANNEL = "django"
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.PUBLIC_BASE_URL = "https://engage.example.com"
        settings.DEFAULT_FROM_EMAIL = "hello@mail.example.com"
        settings.SMS_CHANNEL = "twilio"
        twilio.configure(settings)
        settings.PUSH_CHANNEL = "fcm"
        fcm.configure(settings, service_account_key(tmp_path, token_uri=fcm.token_uri, project_id=FCM_PROJECT))
        settings.FCM_PROJECT_ID = ""  # the key file's project_id
        settings.TWILIO_RATE_LIMIT = settings.FCM_RATE_LIMIT = 0
        yield channels
