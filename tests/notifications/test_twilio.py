"""The Twilio backend against the local Twilio stand-in (tests/faults/standins.py): a real HTTP server that speaks
Twilio's Messages API, checks the basic auth, and records every request it received on its side. The backend runs
on a fake clock: its backoff and rate-limit waits are recorded, never waited."""

import base64
import logging
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from notifications.backends import get_backend
from notifications.backends.base import Message, Result
from notifications.backends.twilio import TwilioSmsBackend
from tests.faults.standins import Fault, Reply, Request, TwilioStandIn
from tests.notifications.fakes import FakeClock

SID = "AC" + "0" * 32
TOKEN = "twilio-secret-token"
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


@pytest.fixture
def twilio():
    with TwilioStandIn(account_sid=SID, auth_token=TOKEN, from_number="+15005550006") as standin:
        yield standin


@pytest.fixture(autouse=True)
def twilio_settings(settings, twilio):
    settings.SMS_CHANNEL = "twilio"
    twilio.configure(settings)
    settings.TWILIO_API_BASE = twilio.base_url + "/"  # a trailing slash is fine
    settings.TWILIO_RATE_LIMIT = 0
    settings.CHANNEL_HTTP_TIMEOUT = 5
    settings.CHANNEL_HTTP_MAX_ATTEMPTS = 3
    settings.CHANNEL_HTTP_CONCURRENCY = 1
    return settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def send(clock: FakeClock, messages: list[Message], *, sleep=None) -> list[Result]:
    with TwilioSmsBackend(clock=clock, sleep=sleep or clock.sleep) as backend:
        return backend.send_batch(messages)


def sms(log_id: int = 1, to: str = "+14155550100") -> Message:
    return Message(log_id=log_id, recipient=to, header="We miss you", body="Come back for a free coffee.")


def twilio_error(code: int, message: str, status: int = 400) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def sid_sent_to(twilio: TwilioStandIn, to: str) -> str:
    """The sid the stand-in gave the message it sent to `to`."""
    [sid] = [message["Sid"] for message in twilio.messages if message["To"] == to]
    return sid


def arrival_times(twilio: TwilioStandIn, clock: FakeClock) -> list[float]:
    """The fake clock's reading as each request reaches the stand-in."""
    times: list[float] = []

    def note(request: Request) -> None:
        times.append(round(clock(), 6))

    twilio.on_request = note
    return times


def test_the_alias_selects_this_backend():
    assert isinstance(get_backend("sms"), TwilioSmsBackend)


def test_request_shape_auth_and_success(clock, twilio):
    [result] = send(clock, [sms()])
    assert result == Result(log_id=1, status="sent", provider_message_id=sid_sent_to(twilio, "+14155550100"))
    [request] = twilio.received
    assert request.method == "POST"
    assert request.path == PATH
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form() == {
        "To": "+14155550100",
        "From": "+15005550006",
        "Body": "We miss you\nCome back for a free coffee.",
    }


def test_messaging_service_replaces_from(clock, settings, twilio):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32
    send(clock, [sms()])
    form = twilio.received[0].form()
    assert form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in form


def test_429_with_retry_after_then_success(clock, twilio):
    times = arrival_times(twilio, clock)
    twilio.script(
        "+14155550100",
        [Reply(429, {"code": 20429, "message": "Too Many Requests"}, headers={"Retry-After": "4"}), Fault.OK],
    )
    [result] = send(clock, [sms()])
    assert result.status == "sent"
    assert result.provider_message_id == sid_sent_to(twilio, "+14155550100")
    assert len(times) == 2
    assert times[1] - times[0] >= 4


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_may_have_sent_the_sms_so_it_is_unknown_and_not_retried(clock, twilio, status):
    # Twilio's error 20500 says sending is not idempotent; 20503 does not say the request was not processed.
    twilio.script("+14155550100", [Reply(status, twilio_error(20000 + status, "Service error", status)), Fault.OK])
    [result] = send(clock, [sms()])
    assert result.status == "unknown"
    assert result.error == f"Twilio answered HTTP {status}; the message may have been sent"
    assert len(twilio.received) == 1


def test_429_then_success(clock, twilio):
    twilio.script("+14155550100", [Reply(429, twilio_error(20429, "Too Many Requests", 429)), Fault.OK])
    [result] = send(clock, [sms()])
    assert result.provider_message_id == sid_sent_to(twilio, "+14155550100")
    assert len(twilio.received) == 2


def test_invalid_number_is_a_permanent_failure(clock, twilio):
    twilio.fault = Reply(400, twilio_error(21211, "The 'To' number +14155550100 is not a valid phone number."))
    [result] = send(clock, [sms()])
    assert len(twilio.received) == 1
    assert result.status == "failed"
    assert result.retryable is False
    assert result.revoked is False
    assert "21211" in result.error
    assert "+14155550100" not in result.error


def test_stop_reply_revokes_consent_and_is_not_retried(clock, twilio):
    twilio.fault = Reply(400, twilio_error(21610, "Attempt to send to unsubscribed recipient"))
    [result] = send(clock, [sms()])
    assert len(twilio.received) == 1
    assert result.status == "failed"
    assert result.revoked is True
    assert result.retryable is False
    assert "STOP" in result.error


def test_refused_connection_then_success(clock, twilio):
    twilio.down()

    def sleep(seconds: float) -> None:  # Twilio is back by the time the backoff is over
        clock.sleep(seconds)
        twilio.up()

    [result] = send(clock, [sms()], sleep=sleep)
    assert result.provider_message_id == sid_sent_to(twilio, "+14155550100")
    assert len(clock.sleeps) == 1, "one backoff: the refused attempt, then the one that went through"
    assert len(twilio.received) == 1


def test_refused_connections_until_the_attempts_run_out_fail_as_retryable(clock, twilio):
    twilio.down()
    [result] = send(clock, [sms()])
    assert len(clock.sleeps) == 2, "three attempts, a backoff between each"
    assert result.status == "failed"
    assert result.retryable is True
    assert result.error == "could not connect to Twilio (connect error) (after 3 attempts)"


def test_a_read_timeout_is_unknown_and_not_retried(clock, settings, twilio):
    settings.CHANNEL_HTTP_TIMEOUT = 0.3
    twilio.fault = Fault.HANGING
    started = time.monotonic()
    [result] = send(clock, [sms()])
    assert time.monotonic() - started < 3, "CHANNEL_HTTP_TIMEOUT bounds the wait for an answer"
    assert len(twilio.received) == 1
    assert result.status == "unknown"
    assert result.error == "Twilio: no answer after the request was sent (timeout); it may have been sent"
    assert twilio.deliveries == {}


def test_rejected_credentials_fail_the_whole_batch_without_trying_the_rest(clock, settings, twilio):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    results = send(clock, [sms(log_id=n) for n in range(1, 6)])
    assert len(twilio.received) == 1
    assert [result.log_id for result in results] == [1, 2, 3, 4, 5]
    assert all(result.status == "failed" and "credentials" in result.error for result in results)
    assert results[0].error == "Twilio rejected the credentials (HTTP 401, code 20003)"


def test_mixed_batch_gets_one_result_per_message_in_order(clock, settings, twilio):
    settings.CHANNEL_HTTP_CONCURRENCY = 4
    twilio.script("+14155550113", [Reply(400, {"code": 21614, "message": "not a mobile number"})])
    results = send(clock, [sms(log_id=n, to=f"+141555501{n:02d}") for n in range(10, 20)])
    assert [result.log_id for result in results] == list(range(10, 20))
    assert [result.status for result in results] == ["sent"] * 3 + ["failed"] + ["sent"] * 6
    assert results[0].provider_message_id == sid_sent_to(twilio, "+14155550110")
    assert results[3].error == "Twilio error 21614 (HTTP 400): 'To' is not a mobile number"


def test_rate_limit_holds_per_second(clock, settings, twilio):
    settings.TWILIO_RATE_LIMIT = 5
    times = arrival_times(twilio, clock)
    send(clock, [sms(log_id=n) for n in range(20)])
    assert len(times) == 20
    assert max(sum(1 for t in times if start <= t < round(start + 1, 6)) for start in times) == 5


@pytest.mark.parametrize("missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"])
def test_missing_credentials_refuse_to_open(settings, missing):
    setattr(settings, missing, "")
    with pytest.raises(ImproperlyConfigured, match=missing):
        TwilioSmsBackend().open()


def test_a_sender_is_required(settings):
    settings.TWILIO_FROM_NUMBER = ""
    with pytest.raises(ImproperlyConfigured, match="TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"):
        TwilioSmsBackend().open()


def test_a_malformed_api_base_fails_the_batch_once(clock, settings, twilio, caplog):
    settings.TWILIO_API_BASE = f"htp://{twilio.address}"  # a scheme libcurl does not know: refused before connecting
    with caplog.at_level(logging.INFO, logger="notifications.backends.http"):
        results = send(clock, [sms(log_id=n) for n in range(3)])
    error = 'cannot send to Twilio: Protocol "htp" not supported (curl 1)'
    assert [(result.status, result.error, result.retryable) for result in results] == [("failed", error, False)] * 3
    assert [record.message for record in caplog.records].count("batch stopped") == 1, "the first message stops it"
    assert clock.sleeps == [], "not retried"
    assert twilio.received == []


def test_an_api_base_without_a_scheme_fails_the_batch_without_sending(clock, settings, twilio):
    settings.TWILIO_API_BASE = twilio.address  # "127.0.0.1:PORT": no scheme
    results = send(clock, [sms(log_id=n) for n in range(3)])
    assert twilio.received == []
    assert all(result.status == "failed" and result.error.startswith("cannot send to Twilio") for result in results)
