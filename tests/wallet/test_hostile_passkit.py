"""Hostile input to the PassKit web service (called by anyone on the internet): junk identifiers and update tags,
malformed or huge bodies and logs answer 4xx and write nothing; device logs cannot forge log lines; a server without
usable certificates answers 503. The business API's side is in tests/engagement_site/test_hostile_input.py.
"""

import json
import logging

import pytest

from tests.factories import CustomerFactory, WalletPassFactory
from tests.wallet.conftest import PASS_TYPE_ID, issued_apple_pass
from wallet.models import AppleDeviceRegistration

pytestmark = pytest.mark.django_db

PASSKIT = "/wallet/apple/v1"
DEEP = 100_000


def _nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _device_logs(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "wallet.apple_web_service"]


@pytest.mark.parametrize(
    "path",
    [
        "/passes/{type}/%00",
        "/passes/%00/{serial}",
        "/passes/{type}/{serial}%00",
        "/devices/%00/registrations/{type}",
        "/devices/%00/registrations/{type}/{serial}",
        "/devices/dev/registrations/{type}/%00",
        "/devices/dev%0A/registrations/{type}/{serial}",
    ],
)
def test_junk_in_passkit_paths_is_a_4xx(client, apple_settings, business, path):
    wallet_pass, token = issued_apple_pass(customer=CustomerFactory(business=business))
    url = PASSKIT + path.format(type=PASS_TYPE_ID, serial=wallet_pass.pass_id)
    auth = {"HTTP_AUTHORIZATION": f"ApplePass {token}"}
    if path.startswith("/passes/") or path.endswith("{type}"):
        response = client.get(url, **auth)
    else:
        response = client.post(url, data=json.dumps({"pushToken": "abc"}), content_type="application/json", **auth)
    assert response.status_code in (400, 404)
    assert not AppleDeviceRegistration.objects.exists()


@pytest.mark.parametrize("tag", ["²", "١٢٣", "9" * 19, "9" * 400, "-1", "1\x00"])
def test_junk_update_tags_are_a_400(client, apple_settings, tag):
    url = f"{PASSKIT}/devices/dev/registrations/{PASS_TYPE_ID}"
    assert client.get(url, {"passesUpdatedSince": tag}).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        '{"pushToken": ' + _nested_lists(DEEP) + "}",
        _nested_objects(DEEP),
        "[]",
        '"x"',
        b"\xff",
        "{",
        '{"pushToken": "abc\\n"}',
        '{"pushToken": "abc\\u0000"}',
        json.dumps({"pushToken": "a", "x": "y" * 100_000}),
    ],
)
def test_malformed_registrations_are_a_400(client, apple_settings, business, body):
    wallet_pass, token = issued_apple_pass(customer=CustomerFactory(business=business))
    url = f"{PASSKIT}/devices/dev/registrations/{PASS_TYPE_ID}/{wallet_pass.pass_id}"
    auth = {"HTTP_AUTHORIZATION": f"ApplePass {token}"}
    assert client.post(url, data=body, content_type="application/json", **auth).status_code == 400
    assert not AppleDeviceRegistration.objects.exists()


# --- 6. the PassKit log endpoint ---


@pytest.mark.parametrize(
    "body",
    [
        '{"logs": 5}',
        '{"logs": "one line"}',
        '{"logs": {"a": 1}}',
        '{"logs": [1, 2]}',
        '{"logs": [["nested"]]}',
        '{"logs": null}',
        "{}",
        "[1, 2]",
        '"logs"',
        "5",
        "not json",
        '{"logs": ' + _nested_lists(DEEP) + "}",
        _nested_objects(DEEP),
        b"\xff\xfe",
        json.dumps({"logs": ["x" * 1000] * 10_000}),
        json.dumps({"logs": ["x" * 1000] * 3000}),
    ],
)
def test_malformed_or_huge_passkit_logs_are_a_400(client, caplog, body):
    with caplog.at_level(logging.WARNING, logger="wallet.apple_web_service"):
        response = client.post(f"{PASSKIT}/log", data=body, content_type="application/json")
    assert response.status_code == 400
    assert not _device_logs(caplog)


def test_passkit_logs_cannot_forge_log_lines(client, caplog):
    forged = "ok\n2026-03-01 12:00:00 ERROR django boom\r\x1b[31mred\x00\u2028\u202eend"
    with caplog.at_level(logging.WARNING, logger="wallet.apple_web_service"):
        response = client.post(f"{PASSKIT}/log", data=json.dumps({"logs": [forged]}), content_type="application/json")
    assert response.status_code == 200
    [record] = _device_logs(caplog)
    assert record.device_log == r"ok\n2026-03-01 12:00:00 ERROR django boom\r\x1b[31mred\x00\u2028\u202eend"


def test_passkit_logs_are_bounded_in_number_and_length(client, caplog):
    logs = [f"line {n} " + "y" * 900 for n in range(60)]
    with caplog.at_level(logging.WARNING, logger="wallet.apple_web_service"):
        response = client.post(f"{PASSKIT}/log", data=json.dumps({"logs": logs}), content_type="application/json")
    assert response.status_code == 200
    *lines, dropped = _device_logs(caplog)
    assert [record.device_log for record in lines] == [line[:500] for line in logs[:50]]
    assert dropped.dropped_lines == 10


def test_good_passkit_logs_are_logged_as_sent(client, caplog):
    with caplog.at_level(logging.WARNING, logger="wallet.apple_web_service"):
        body = json.dumps({"logs": ["Web service error: 500", "Ünïcode ✓"]})
        response = client.post(f"{PASSKIT}/log", data=body, content_type="application/json")
    assert response.status_code == 200
    assert [record.device_log for record in _device_logs(caplog)] == ["Web service error: 500", "Ünïcode ✓"]


def test_a_key_that_is_not_the_certificates_is_a_503(api, business, apple_settings, cert_chain):
    apple_settings.APPLE_PASS_CERT_FILE = str(cert_chain.wwdr_file)
    wallet_pass = WalletPassFactory(customer=CustomerFactory(business=business), platform="apple")
    response = api.get(f"/api/customers/{wallet_pass.customer.customer_id}/pass")
    assert response.status_code == 503
    assert "APPLE_PASS_KEY_FILE is not the key of APPLE_PASS_CERT_FILE" in response.json()["detail"]


def test_the_passkit_latest_pass_without_certificates_is_a_503(client, apple_settings, business):
    apple_settings.APPLE_PASS_CERT_FILE = "/nonexistent/pass.pem"
    wallet_pass, token = issued_apple_pass(customer=CustomerFactory(business=business))
    auth = {"HTTP_AUTHORIZATION": f"ApplePass {token}"}
    assert client.get(f"{PASSKIT}/passes/{PASS_TYPE_ID}/{wallet_pass.pass_id}", **auth).status_code == 503


def test_the_device_log_endpoint_is_throttled_per_address(client, settings):
    settings.PASSKIT_LOG_THROTTLE_RATE = "3/min"
    body = json.dumps({"logs": ["Web service error"]})
    statuses = [client.post(f"{PASSKIT}/log", data=body, content_type="application/json").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
