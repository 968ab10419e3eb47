import base64
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.core.exceptions import ImproperlyConfigured

from notifications.backends import get_backend
from notifications.backends.base import Message, Result
from notifications.backends.twilio import TwilioSmsBackend
from tests.notifications.fakes import FakeClock

SID = "AC" + "0" * 32
TOKEN = "twilio-secret-token"
URL = f"https://twilio.test/2010-04-01/Accounts/{SID}/Messages.json"


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.SMS_CHANNEL = "twilio"
    settings.TWILIO_ACCOUNT_SID = SID
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_API_BASE = "https://twilio.test/"
    settings.TWILIO_RATE_LIMIT = 0
    settings.CHANNEL_HTTP_TIMEOUT = 5
    settings.CHANNEL_HTTP_MAX_ATTEMPTS = 3
    settings.CHANNEL_HTTP_CONCURRENCY = 1
    return settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def send(clock: FakeClock, messages: list[Message]) -> list[Result]:
    with TwilioSmsBackend(clock=clock, sleep=clock.sleep) as backend:
        return backend.send_batch(messages)


def sms(log_id: int = 1, to: str = "+14155550100") -> Message:
    return Message(log_id=log_id, recipient=to, header="We miss you", body="Come back for a free coffee.")


def created(sid: str = "SM" + "a" * 32) -> dict:
    return {"sid": sid, "status": "queued"}


def twilio_error(code: int, message: str, status: int = 400) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def test_the_alias_selects_this_backend():
    assert isinstance(get_backend("sms"), TwilioSmsBackend)


@responses.activate
def test_request_shape_auth_and_success(clock):
    responses.post(URL, json=created(), status=201)
    [result] = send(clock, [sms()])
    assert result == Result(log_id=1, status="sent", provider_message_id="SM" + "a" * 32)
    [call] = responses.calls
    assert call.request.method == "POST"
    assert call.request.url == URL
    assert call.request.headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(call.request.body) == {
        "To": ["+14155550100"],
        "From": ["+15005550006"],
        "Body": ["We miss you\nCome back for a free coffee."],
    }
    assert call.request.req_kwargs["timeout"] == 5.0


@responses.activate
def test_messaging_service_replaces_from(clock, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32
    responses.post(URL, json=created(), status=201)
    send(clock, [sms()])
    form = parse_qs(responses.calls[0].request.body)
    assert form["MessagingServiceSid"] == ["MG" + "1" * 32]
    assert "From" not in form


@responses.activate
def test_429_with_retry_after_then_success(clock):
    times: list[float] = []

    def answer(request):
        times.append(clock())
        if len(times) == 1:
            return 429, {"Retry-After": "4"}, '{"code": 20429, "message": "Too Many Requests"}'
        return 201, {}, '{"sid": "SM1"}'

    responses.add_callback(responses.POST, URL, callback=answer)
    [result] = send(clock, [sms()])
    assert result.status == "sent"
    assert result.provider_message_id == "SM1"
    assert times[1] - times[0] >= 4


@responses.activate
@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_may_have_sent_the_sms_so_it_is_unknown_and_not_retried(clock, status):
    # Twilio's error 20500 says sending is not idempotent; 20503 does not say the request was not processed.
    responses.post(URL, status=status, json=twilio_error(20000 + status, "Service error", status))
    responses.post(URL, json=created("SM2"), status=201)
    [result] = send(clock, [sms()])
    assert result.status == "unknown"
    assert len(responses.calls) == 1


@responses.activate
def test_429_then_success(clock):
    responses.post(URL, status=429, json=twilio_error(20429, "Too Many Requests", 429))
    responses.post(URL, json=created("SM2"), status=201)
    [result] = send(clock, [sms()])
    assert result.provider_message_id == "SM2"
    assert len(responses.calls) == 2


@responses.activate
def test_invalid_number_is_a_permanent_failure(clock):
    responses.post(
        URL, status=400, json=twilio_error(21211, "The 'To' number +14155550100 is not a valid phone number.")
    )
    [result] = send(clock, [sms()])
    assert len(responses.calls) == 1
    assert result.status == "failed"
    assert result.retryable is False
    assert result.revoked is False
    assert "21211" in result.error
    assert "+14155550100" not in result.error


@responses.activate
def test_stop_reply_revokes_consent_and_is_not_retried(clock):
    responses.post(URL, status=400, json=twilio_error(21610, "Attempt to send to unsubscribed recipient"))
    [result] = send(clock, [sms()])
    assert len(responses.calls) == 1
    assert result.status == "failed"
    assert result.revoked is True
    assert result.retryable is False
    assert "STOP" in result.error


@responses.activate
def test_timeout_then_success(clock):
    responses.post(URL, body=requests.ConnectTimeout("connect timed out"))
    responses.post(URL, json=created("SM3"), status=201)
    [result] = send(clock, [sms()])
    assert result.provider_message_id == "SM3"


@responses.activate
def test_connect_timeouts_until_the_attempts_run_out_fail_as_retryable(clock):
    responses.post(URL, body=requests.ConnectTimeout("connect timed out"))
    [result] = send(clock, [sms()])
    assert len(responses.calls) == 3
    assert result.status == "failed"
    assert result.retryable is True
    assert "ConnectTimeout" in result.error


@responses.activate
def test_a_read_timeout_is_unknown_and_not_retried(clock):
    responses.post(URL, body=requests.ReadTimeout("read timed out"))
    [result] = send(clock, [sms()])
    assert len(responses.calls) == 1
    assert result.status == "unknown"


@responses.activate
def test_rejected_credentials_fail_the_whole_batch_without_trying_the_rest(clock):
    responses.post(URL, status=401, json=twilio_error(20003, "Authenticate", 401))
    results = send(clock, [sms(log_id=n) for n in range(1, 6)])
    assert len(responses.calls) == 1
    assert [result.log_id for result in results] == [1, 2, 3, 4, 5]
    assert all(result.status == "failed" and "credentials" in result.error for result in results)


@responses.activate
def test_mixed_batch_gets_one_result_per_message_in_order(clock, settings):
    settings.CHANNEL_HTTP_CONCURRENCY = 4

    def answer(request):
        to = parse_qs(request.body)["To"][0]
        if to.endswith("13"):
            return 400, {}, '{"code": 21614, "message": "not a mobile number"}'
        return 201, {}, f'{{"sid": "SM{to[-2:]}"}}'

    responses.add_callback(responses.POST, URL, callback=answer)
    results = send(clock, [sms(log_id=n, to=f"+141555501{n:02d}") for n in range(10, 20)])
    assert [result.log_id for result in results] == list(range(10, 20))
    assert [result.status for result in results] == ["sent"] * 3 + ["failed"] + ["sent"] * 6
    assert results[0].provider_message_id == "SM10"


@responses.activate
def test_rate_limit_holds_per_second(clock, settings):
    settings.TWILIO_RATE_LIMIT = 5
    times: list[float] = []

    def answer(request):
        times.append(round(clock(), 6))
        return 201, {}, '{"sid": "SM"}'

    responses.add_callback(responses.POST, URL, callback=answer)
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


@responses.activate
def test_a_malformed_api_base_fails_the_batch_once(clock, settings):
    settings.TWILIO_API_BASE = "twilio.test"
    results = send(clock, [sms(log_id=n) for n in range(3)])
    assert [result.error for result in results] == ["cannot send to Twilio: MissingSchema"] * 3
    assert len(responses.calls) == 0
