"""The fault-injecting stand-ins behave as specified, seen from plain clients with short timeouts.

requests for Twilio, FCM and Google Wallet; httpx over HTTP/2 with the test client certificate for APNs; smtplib
(and once Django's SMTP backend) for SMTP. Each test checks what the client sees and what the stand-in counted.
"""

import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
from django.core.mail import EmailMessage, get_connection
from google.auth.transport.requests import AuthorizedSession
from google.auth.transport.requests import Request as GoogleAuthRequest
from google.oauth2 import service_account

from tests.faults.apns_faults import ApnsFaultStandIn
from tests.faults.smtp_faults import SmtpFault, SmtpFaultServer
from tests.faults.standins import (
    Fault,
    FcmStandIn,
    GoogleWalletStandIn,
    HttpStandIn,
    Reply,
    TwilioStandIn,
    write_service_account_key,
)
from tests.wallet.certs import KEY_PASSWORD, CertChain, make_chain

TIMEOUT = 0.5
SLOW = 2.0
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


# ---------------------------------------------------------------------------------------------------------------
# HTTP providers: one client per provider, so every generic fault runs against all three.


@dataclass
class Provider:
    name: str
    make: Callable[..., HttpStandIn]
    send: Callable[..., requests.Response]  # (standin, recipient, timeout, http=requests or a Session)
    recipient: str
    success_status: int
    check_success: Callable[[dict], None]
    check_error: Callable[[int, dict], None]


def _bearer(standin, http: Any = requests) -> dict[str, str]:
    token = http.post(standin.token_uri, data={"grant_type": JWT_GRANT, "assertion": "x.y.z"}, timeout=2)
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _twilio_send(standin: TwilioStandIn, to: str, timeout: float, http: Any = requests) -> requests.Response:
    form = {"To": to, "From": standin.from_number, "Body": "We miss you"}
    auth = (standin.account_sid, standin.auth_token)
    return http.post(standin.messages_url, data=form, auth=auth, timeout=timeout)


def _fcm_send(standin: FcmStandIn, token: str, timeout: float, http: Any = requests) -> requests.Response:
    payload = {"message": {"token": token, "notification": {"title": "Hi", "body": "We miss you"}}}
    return http.post(standin.send_url, json=payload, headers=_bearer(standin, http), timeout=timeout)


def _google_url(standin: GoogleWalletStandIn, object_id: str, action: str = "") -> str:
    return f"{standin.base_url}/walletobjects/v1/loyaltyObject/{object_id}" + (f"/{action}" if action else "")


def _google_send(
    standin: GoogleWalletStandIn,
    object_id: str,
    timeout: float,
    http: Any = requests,
    *,
    notify: bool = False,
    message_id: str = "m1",
) -> requests.Response:
    message = {"id": message_id, "header": "Hi", "body": "We miss you"}
    message["messageType"] = "TEXT_AND_NOTIFY" if notify else "TEXT"
    url = _google_url(standin, object_id, "addMessage")
    return http.post(url, json={"message": message}, headers=_bearer(standin, http), timeout=timeout)


def _twilio_error(status: int, body: dict) -> None:
    assert body["status"] == status
    assert body["code"] == {500: 20500, 503: 20503, 429: 20429}[status]


def _fcm_error(status: int, body: dict) -> None:
    error = body["error"]
    assert error["code"] == status
    expected = {500: ("INTERNAL", "INTERNAL"), 503: ("UNAVAILABLE", "UNAVAILABLE")}
    expected[429] = ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
    assert (error["status"], error["details"][0]["errorCode"]) == expected[status]


def _google_error(status: int, body: dict) -> None:
    assert body["error"]["code"] == status
    assert body["error"]["status"] == {500: "INTERNAL", 503: "UNAVAILABLE", 429: "RESOURCE_EXHAUSTED"}[status]


def _twilio_ok(body: dict) -> None:
    assert body["status"] == "queued"
    assert body["sid"].startswith("SM") and len(body["sid"]) == 34


def _fcm_ok(body: dict) -> None:
    assert body["name"].startswith("projects/standin-project/messages/")


def _google_ok(body: dict) -> None:
    assert body["resource"]["id"] == "3388.pass-1"
    assert [message["id"] for message in body["resource"]["messages"]] == ["m1"]


PROVIDERS = [
    Provider("twilio", TwilioStandIn, _twilio_send, "+15551230001", 201, _twilio_ok, _twilio_error),
    Provider("fcm", FcmStandIn, _fcm_send, "device-token-1", 200, _fcm_ok, _fcm_error),
    Provider("google", GoogleWalletStandIn, _google_send, "3388.pass-1", 200, _google_ok, _google_error),
]


@pytest.fixture(params=PROVIDERS, ids=[provider.name for provider in PROVIDERS])
def provider(request) -> Iterator[tuple[Provider, HttpStandIn]]:
    spec: Provider = request.param
    with spec.make(slow_seconds=SLOW) as standin:
        yield spec, standin


def test_ok_acts_and_answers_success(provider):
    spec, standin = provider
    response = spec.send(standin, spec.recipient, TIMEOUT)
    assert response.status_code == spec.success_status
    spec.check_success(response.json())
    assert standin.deliveries == {spec.recipient: 1}
    assert standin.requests == {spec.recipient: 1}
    assert standin.total_requests == 1


def test_accept_then_timeout_counts_and_the_client_times_out(provider):
    spec, standin = provider
    standin.fault = Fault.ACCEPT_THEN_TIMEOUT
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        spec.send(standin, spec.recipient, TIMEOUT)
    assert time.monotonic() - started < SLOW
    assert standin.deliveries == {spec.recipient: 1}


def test_accept_then_timeout_answers_success_late(provider):
    spec, standin = provider
    standin.fault, standin.slow_seconds = Fault.ACCEPT_THEN_TIMEOUT, 0.2
    started = time.monotonic()
    response = spec.send(standin, spec.recipient, 2)
    assert time.monotonic() - started >= 0.2
    assert response.status_code == spec.success_status
    assert standin.deliveries == {spec.recipient: 1}


def test_reset_after_receipt_counts_and_the_client_sees_a_reset(provider):
    spec, standin = provider
    standin.fault = Fault.RESET_AFTER_RECEIPT
    with pytest.raises(requests.ConnectionError) as raised:
        spec.send(standin, spec.recipient, TIMEOUT)
    assert "ConnectionResetError" in repr(raised.value)
    assert standin.deliveries == {spec.recipient: 1}


def test_http_500_counts_a_delivery(provider):
    spec, standin = provider
    standin.fault = Fault.HTTP_500
    response = spec.send(standin, spec.recipient, TIMEOUT)
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    spec.check_error(500, response.json())
    assert standin.deliveries == {spec.recipient: 1}


@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [(Fault.HTTP_503, 503, None), (Fault.HTTP_503_RETRY_AFTER, 503, "1"), (Fault.HTTP_429, 429, "1")],
)
def test_refusals_are_not_counted(provider, fault, status, retry_after):
    spec, standin = provider
    standin.fault = fault
    response = spec.send(standin, spec.recipient, TIMEOUT)
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    spec.check_error(status, response.json())
    assert standin.deliveries == {}
    assert standin.requests == {spec.recipient: 1}


def test_refused_closes_and_reopens_the_same_port(provider):
    spec, standin = provider
    port = standin.port
    standin.fault = Fault.REFUSED
    assert not standin.is_up
    with pytest.raises(requests.ConnectionError) as raised:
        spec.send(standin, spec.recipient, TIMEOUT)  # FCM and Google: already their token request is refused
    assert "[Errno 111] Connection refused" in str(raised.value)
    standin.fault = Fault.OK
    assert standin.port == port
    assert spec.send(standin, spec.recipient, TIMEOUT).status_code == spec.success_status
    standin.down()
    with pytest.raises(requests.ConnectionError):
        spec.send(standin, spec.recipient, TIMEOUT)
    standin.up()
    assert spec.send(standin, spec.recipient, TIMEOUT).status_code == spec.success_status
    assert standin.deliveries == {spec.recipient: 2}
    standin.stop()
    standin.start()  # a stopped stand-in can start again, on the same port
    assert standin.port == port
    assert spec.send(standin, spec.recipient, TIMEOUT).status_code == spec.success_status


def test_hanging_never_answers_nor_counts_and_stop_is_prompt(provider):
    spec, standin = provider
    standin.fault = Fault.HANGING
    with pytest.raises(requests.ReadTimeout):
        spec.send(standin, spec.recipient, TIMEOUT)
    assert standin.deliveries == {}
    assert standin.requests == {spec.recipient: 1}
    # Another request hanging server-side when the stand-in stops.
    with pytest.raises(requests.ReadTimeout):
        spec.send(standin, spec.recipient, 0.1)
    started = time.monotonic()
    standin.stop()
    assert time.monotonic() - started < 1


def test_script_per_recipient_then_falls_back_to_the_fault(provider):
    spec, standin = provider
    other = spec.recipient[:-1] + "9"
    standin.script(spec.recipient, [Fault.HTTP_503, Fault.OK, Reply(418, {"teapot": True})])
    standin.fault = Fault.HTTP_429
    assert spec.send(standin, spec.recipient, TIMEOUT).status_code == 503
    assert spec.send(standin, other, TIMEOUT).status_code == 429
    assert spec.send(standin, spec.recipient, TIMEOUT).status_code == spec.success_status
    assert spec.send(standin, spec.recipient, TIMEOUT).json() == {"teapot": True}
    assert spec.send(standin, spec.recipient, TIMEOUT).status_code == 429
    assert standin.deliveries == {spec.recipient: 1}
    assert standin.requests == {spec.recipient: 4, other: 1}
    with pytest.raises(ValueError):
        standin.script(spec.recipient, [Fault.REFUSED])


def test_keep_alive_session_survives_refusals(provider):
    spec, standin = provider
    standin.script(spec.recipient, [Fault.HTTP_503, Fault.HTTP_429])
    with requests.Session() as session:
        statuses = [spec.send(standin, spec.recipient, TIMEOUT, http=session).status_code for _ in range(3)]
    assert statuses == [503, 429, spec.success_status]
    assert standin.deliveries == {spec.recipient: 1}


# ---------------------------------------------------------------------------------------------------------------
# Provider-specific behaviour


def test_twilio_rejects_wrong_credentials():
    with TwilioStandIn() as twilio:
        response = requests.post(twilio.messages_url, data={"To": "+1555"}, auth=(twilio.account_sid, "wrong"))
        assert response.status_code == 401
        assert response.json()["code"] == 20003
        assert twilio.deliveries == {}


def test_fcm_auth_errors():
    with FcmStandIn() as fcm:
        payload = {"message": {"token": "t1"}}
        assert requests.post(fcm.send_url, json=payload, timeout=2).status_code == 401  # no token
        headers = _bearer(fcm)
        fcm.reject_auth("t1")
        response = requests.post(fcm.send_url, json=payload, headers=headers, timeout=2)
        assert response.status_code == 401
        assert response.json()["error"]["details"][0]["errorCode"] == "APNS_AUTH_ERROR"
        assert requests.post(fcm.send_url, json=payload, headers=headers, timeout=2).status_code == 200
        fcm.unregistered("t1")
        response = requests.post(fcm.send_url, json=payload, headers=headers, timeout=2)
        assert response.json()["error"]["details"][0]["errorCode"] == "UNREGISTERED"
        fcm.expire_tokens()
        assert requests.post(fcm.send_url, json=payload, headers=headers, timeout=2).status_code == 401
        assert fcm.deliveries == {"t1": 1}
        assert fcm.token_requests == 1


def test_key_file_works_with_google_auth(tmp_path):
    with FcmStandIn() as fcm, GoogleWalletStandIn() as google:
        fcm_key = fcm.write_key_file(tmp_path)
        credentials = service_account.Credentials.from_service_account_file(
            str(fcm_key), scopes=["https://www.googleapis.com/auth/firebase.messaging"]
        )
        credentials.refresh(GoogleAuthRequest())
        assert credentials.valid and credentials.token in fcm.tokens
        google_key = write_service_account_key(tmp_path, token_uri=google.token_uri)
        credentials = service_account.Credentials.from_service_account_file(
            str(google_key), scopes=["https://www.googleapis.com/auth/wallet_object.issuer"]
        )
        session = AuthorizedSession(credentials)
        url = _google_url(google, "3388.p", "addMessage")
        assert session.post(url, json={"message": {"id": "a", "body": "x"}}, timeout=2).status_code == 200
        google.expire_tokens()  # AuthorizedSession refreshes on 401 and retries
        assert session.post(url, json={"message": {"id": "b", "body": "y"}}, timeout=2).status_code == 200
        assert google.token_requests == 2
        assert google.deliveries == {"3388.p": 2}


def test_google_quota_exceeded_for_notifying_messages():
    with GoogleWalletStandIn(notify_limit=2) as google:
        obj = "3388.pass-q"
        for number in range(2):
            assert _google_send(google, obj, 2, notify=True, message_id=f"n{number}").status_code == 200
        response = _google_send(google, obj, 2, notify=True, message_id="n2")
        assert response.status_code == 403
        error = response.json()["error"]
        assert (error["status"], error["errors"][0]["reason"]) == ("PERMISSION_DENIED", "quotaExceeded")
        assert error["message"].startswith("Quota exceeded for quota metric")
        assert _google_send(google, obj, 2, notify=False, message_id="t").status_code == 200  # plain text still goes
        google.exceed_quota("3388.pass-other")
        assert _google_send(google, "3388.pass-other", 2, notify=True).status_code == 403
        assert google.deliveries == {obj: 3}
        assert [message["id"] for message in google.messages(obj)] == ["n0", "n1", "t"]


def test_google_get_and_patch_messages():
    with GoogleWalletStandIn() as google:
        obj = "3388.pass-g"
        headers = _bearer(google)
        interval = {"start": {"date": "2025-01-01T00:00:00Z"}, "end": {"date": "2025-01-08T00:00:00Z"}}
        message = {"id": "m", "header": "H", "body": "B", "messageType": "TEXT", "displayInterval": interval}
        url = _google_url(google, obj, "addMessage")
        assert requests.post(url, json={"message": message}, headers=headers, timeout=2).status_code == 200
        got = requests.get(_google_url(google, obj), headers=headers, timeout=2).json()
        assert got["id"] == obj
        assert got["messages"][0]["displayInterval"] == interval
        patched = requests.patch(_google_url(google, obj), json={"messages": []}, headers=headers, timeout=2)
        assert patched.status_code == 200 and patched.json()["messages"] == []
        assert google.messages(obj) == []
        assert google.deliveries == {obj: 1}  # GET and PATCH are not deliveries
        assert google.requests == {obj: 3}


# ---------------------------------------------------------------------------------------------------------------
# APNs (HTTP/2 over TLS with the test client certificate)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> CertChain:
    return make_chain(tmp_path_factory.mktemp("fault-certs"))


@pytest.fixture
def apns(chain) -> Iterator[ApnsFaultStandIn]:
    with ApnsFaultStandIn.from_chain(chain, slow_seconds=SLOW) as standin:
        yield standin


@pytest.fixture
def apns_client(chain, apns) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(chain.ca_file))
    context.load_cert_chain(str(chain.pass_cert_file), str(chain.pass_key_file), password=KEY_PASSWORD)
    with httpx.Client(base_url=f"https://{apns.address}", http2=True, verify=context, timeout=TIMEOUT) as client:
        yield client


def _push(client: httpx.Client, token: str) -> httpx.Response:
    return client.post(f"/3/device/{token}", content=b"{}", headers={"apns-topic": "pass.example"})


def test_apns_ok(apns, apns_client):
    response = _push(apns_client, "aa01")
    assert response.status_code == 200 and response.http_version == "HTTP/2"
    assert response.headers["apns-id"]
    assert apns.deliveries == {"aa01": 1}


@pytest.mark.parametrize(
    ("fault", "status", "reason", "retry_after", "delivered"),
    [
        (Fault.HTTP_500, 500, "InternalServerError", None, 1),
        (Fault.HTTP_503, 503, "ServiceUnavailable", None, 0),
        (Fault.HTTP_503_RETRY_AFTER, 503, "ServiceUnavailable", "1", 0),
        (Fault.HTTP_429, 429, "TooManyRequests", "1", 0),
    ],
)
def test_apns_error_statuses(apns, apns_client, fault, status, reason, retry_after, delivered):
    apns.fault = fault
    response = _push(apns_client, "aa01")
    assert (response.status_code, response.json()["reason"]) == (status, reason)
    assert response.headers.get("retry-after") == retry_after
    assert apns.deliveries["aa01"] == delivered


def test_apns_accept_then_timeout_does_not_block_other_streams(apns, apns_client):
    apns.script("slow", [Fault.ACCEPT_THEN_TIMEOUT])
    assert _push(apns_client, "first").status_code == 200  # the connection is open
    with pytest.raises(httpx.ReadTimeout):
        _push(apns_client, "slow")
    assert _push(apns_client, "after").status_code == 200
    assert apns.deliveries == {"first": 1, "slow": 1, "after": 1}


def test_apns_accept_then_timeout_answers_late(apns, chain):
    apns.fault, apns.slow_seconds = Fault.ACCEPT_THEN_TIMEOUT, 0.2
    context = ssl.create_default_context(cafile=str(chain.ca_file))
    context.load_cert_chain(str(chain.pass_cert_file), str(chain.pass_key_file), password=KEY_PASSWORD)
    with httpx.Client(base_url=f"https://{apns.address}", http2=True, verify=context, timeout=2) as client:
        assert _push(client, "late").status_code == 200
    assert apns.deliveries == {"late": 1}


def test_apns_reset_after_receipt(apns, apns_client):
    apns.fault = Fault.RESET_AFTER_RECEIPT
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)):
        _push(apns_client, "aa01")
    assert apns.deliveries == {"aa01": 1}


def test_apns_refused_then_back_on_the_same_port(apns, apns_client):
    port = apns.port
    apns.fault = Fault.REFUSED
    with pytest.raises(httpx.ConnectError):
        _push(apns_client, "aa01")
    apns.fault = Fault.OK
    assert apns.port == port
    assert _push(apns_client, "aa01").status_code == 200
    assert apns.deliveries == {"aa01": 1}


def test_apns_hanging_connection_and_hanging_stream(apns, apns_client, chain):
    apns.fault = Fault.HANGING  # TLS completes, HTTP/2 never starts
    with pytest.raises(httpx.ReadTimeout):
        _push(apns_client, "aa01")
    assert apns.requests == {} and apns.connections == 1
    apns.fault = Fault.OK
    context = ssl.create_default_context(cafile=str(chain.ca_file))
    context.load_cert_chain(str(chain.pass_cert_file), str(chain.pass_key_file), password=KEY_PASSWORD)
    with httpx.Client(base_url=f"https://{apns.address}", http2=True, verify=context, timeout=TIMEOUT) as client:
        apns.script("stuck", [Fault.HANGING])
        with pytest.raises(httpx.ReadTimeout):
            _push(client, "stuck")
        assert apns.requests["stuck"] == 1 and apns.deliveries == {}
        started = time.monotonic()
        apns.stop()
        assert time.monotonic() - started < 1


def test_apns_rejects_scripted_tokens(apns, apns_client):
    apns.reject("bad", "BadDeviceToken")
    apns.reject("other-topic", "DeviceTokenNotForTopic")
    apns.reject("gone", "Unregistered", status=410)
    assert (_push(apns_client, "bad").status_code, _push(apns_client, "bad").status_code) == (400, 200)
    response = _push(apns_client, "other-topic")
    assert (response.status_code, response.json()) == (400, {"reason": "DeviceTokenNotForTopic"})
    response = _push(apns_client, "gone")
    assert response.status_code == 410 and response.json()["timestamp"] > 0
    assert apns.deliveries == {"bad": 1}


# ---------------------------------------------------------------------------------------------------------------
# SMTP


@pytest.fixture
def smtp() -> Iterator[SmtpFaultServer]:
    with SmtpFaultServer(slow_seconds=SLOW) as server:
        yield server


def _mail(server: SmtpFaultServer, *recipients: str, timeout: float = TIMEOUT) -> dict:
    with smtplib.SMTP(server.host, server.port, timeout=timeout) as client:
        return client.sendmail("shop@example.com", list(recipients), b"Subject: Hi\r\n\r\nWe miss you\r\n.dot\r\n")


def test_smtp_ok(smtp):
    assert _mail(smtp, "a@example.com", "b@example.com") == {}
    assert smtp.deliveries == {"a@example.com": 1, "b@example.com": 1}
    assert smtp.messages[0].message["Subject"] == "Hi"
    assert smtp.messages[0].content.endswith(b"\r\n.dot\r\n")


def test_smtp_with_django_backend(smtp, settings):
    smtp.configure(settings)
    connection = get_connection(timeout=TIMEOUT)
    assert EmailMessage("Hi", "Body", "shop@example.com", ["c@example.com"], connection=connection).send() == 1
    assert smtp.deliveries == {"c@example.com": 1}


@pytest.mark.parametrize(("fault", "code"), [(SmtpFault.TEMP_FAIL_AT_DATA, 451), (SmtpFault.PERM_FAIL_AT_DATA, 554)])
def test_smtp_failures_at_data_are_not_delivered(smtp, fault, code):
    smtp.fault = fault
    with pytest.raises(smtplib.SMTPDataError) as raised:
        _mail(smtp, "a@example.com")
    assert raised.value.smtp_code == code
    assert smtp.deliveries == {} and smtp.requests == {"a@example.com": 1}


def test_smtp_reset_after_data_is_delivered(smtp):
    smtp.fault = SmtpFault.RESET_AFTER_DATA
    with pytest.raises(smtplib.SMTPServerDisconnected) as raised:
        _mail(smtp, "a@example.com")
    assert "reset" in str(raised.value).lower()
    assert smtp.deliveries == {"a@example.com": 1}


def test_smtp_accept_then_timeout_is_delivered(smtp):
    smtp.fault = SmtpFault.ACCEPT_THEN_TIMEOUT
    with pytest.raises(smtplib.SMTPServerDisconnected) as raised:
        _mail(smtp, "a@example.com")
    assert "timed out" in str(raised.value)
    assert smtp.deliveries == {"a@example.com": 1}
    smtp.slow_seconds = 0.2
    assert _mail(smtp, "b@example.com", timeout=2) == {}
    assert smtp.deliveries == {"a@example.com": 1, "b@example.com": 1}


def test_smtp_drop_before_data_is_not_delivered(smtp):
    smtp.fault = SmtpFault.DROP_BEFORE_DATA
    with pytest.raises(smtplib.SMTPServerDisconnected):
        _mail(smtp, "a@example.com")
    assert smtp.deliveries == {} and smtp.requests == {"a@example.com": 1}


def test_smtp_hanging_never_greets(smtp):
    smtp.fault = SmtpFault.HANGING
    with pytest.raises(smtplib.SMTPServerDisconnected) as raised:
        _mail(smtp, "a@example.com")
    assert "timed out" in str(raised.value)
    assert smtp.connections == 1 and smtp.requests == {}
    started = time.monotonic()
    smtp.stop()
    assert time.monotonic() - started < 1


def test_smtp_refused_then_up_on_the_same_port(smtp):
    port = smtp.port
    smtp.fault = SmtpFault.REFUSED
    with pytest.raises(ConnectionRefusedError):
        _mail(smtp, "a@example.com")
    smtp.fault = SmtpFault.OK
    assert smtp.port == port and _mail(smtp, "a@example.com") == {}
    smtp.down()
    with pytest.raises(ConnectionRefusedError):
        _mail(smtp, "a@example.com")
    smtp.up()
    assert _mail(smtp, "a@example.com") == {}
    assert smtp.deliveries == {"a@example.com": 2}


def test_smtp_script_per_recipient(smtp):
    smtp.script("a@example.com", [SmtpFault.TEMP_FAIL_AT_DATA, SmtpFault.OK])
    smtp.fault = SmtpFault.PERM_FAIL_AT_DATA
    with smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT) as client:
        codes = []
        for _ in range(3):
            try:
                client.sendmail("shop@example.com", ["a@example.com"], b"Subject: x\r\n\r\nx\r\n")
                codes.append(250)
            except smtplib.SMTPDataError as exc:
                codes.append(exc.smtp_code)
    assert codes == [451, 250, 554]
    assert smtp.deliveries == {"a@example.com": 1} and smtp.requests == {"a@example.com": 3}
    with pytest.raises(ValueError):
        smtp.script("a@example.com", [SmtpFault.REFUSED])
