"""Hostile input to the business API gets a 4xx in DRF's error shape (or a 503 for an unconfigured feature),
writes nothing and never shows a traceback: deep nesting, NUL characters, absurd time zones and dates, junk path IDs,
huge requests. The PassKit web service's side is in tests/wallet/test_hostile_passkit.py.

Every case goes through the real URL routing and middleware with the test client. On PostgreSQL (DATABASE_URL) the
NUL cases also prove nothing reaches the database, which refuses NUL in text.
"""

import datetime as dt
import io
import json

import pytest
import time_machine
from django.core.exceptions import ValidationError
from rest_framework.exceptions import ValidationError as RequestInvalid

from autoengagement.models import AutoEngagementConfig
from engagement_site.api import MAX_JSON_DEPTH, JSONParser
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, WalletPassFactory
from tests.wallet.conftest import PASS_TYPE_ID, WEB_SERVICE_URL
from wallet.models import Business, Customer
from wallet.services import business_create

pytestmark = pytest.mark.django_db

CUSTOMERS = "/api/customers"
CONFIG = "/api/auto-engagement/config"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
DEEP = 100_000


def _nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _send(api, url: str, body: str | bytes, method: str = "post"):
    return getattr(api, method)(url, data=body, content_type="application/json")


def _error(response, status: int = 400) -> dict:
    """The JSON body of an error in DRF's shapes, {"detail": "..."} or {field: ["message", ...]}: no HTML page,
    no traceback."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict) and body
    if "detail" in body:
        assert isinstance(body["detail"], str) and body["detail"]
    else:
        assert all(isinstance(messages, list) and messages for messages in body.values()), body
    assert b"Traceback" not in response.content
    return body


def _configs(business) -> list[dict]:
    return list(AutoEngagementConfig.objects.filter(business=business).values())


# --- 1. deeply nested JSON ---


@pytest.mark.parametrize(
    "body",
    [_nested_lists(DEEP), _nested_objects(DEEP), '{"first_name": ' + _nested_lists(DEEP) + "}", _nested_lists(40)],
    ids=["lists", "objects", "in-a-field", "past-the-limit"],
)
def test_deeply_nested_json_to_customers_is_a_400(api, business, body):
    assert "nested" in _error(_send(api, CUSTOMERS, body))["detail"]
    assert not Customer.objects.exists()


@pytest.mark.parametrize(
    "nested", [_nested_lists(DEEP), _nested_objects(DEEP), _nested_lists(200)], ids=["lists", "objects", "200"]
)
def test_deeply_nested_message_template_is_a_400(api, business, nested):
    response = _send(api, CONFIG, '{"message_template": ' + nested + "}")
    assert "nested" in _error(response)["detail"]
    assert _configs(business) == []


@pytest.mark.parametrize(("depth", "too_deep"), [(MAX_JSON_DEPTH, False), (MAX_JSON_DEPTH + 1, True)])
def test_the_depth_limit_counts_every_level(api, business, depth, too_deep):
    # The body is an object (1) whose field holds lists nested `depth - 1` deep.
    response = _send(api, CUSTOMERS, '{"first_name": ' + _nested_lists(depth - 1) + "}")
    assert ("nested" in str(_error(response).get("detail", ""))) is too_deep


def test_shallow_nesting_is_an_ordinary_field_error(api, business):
    response = api.post(CONFIG, {"message_template": [[[["x"]]]]}, format="json")
    assert _error(response).keys() == {"message_template"}


# --- 2. NUL characters ---


@pytest.mark.parametrize(
    "template",
    [
        {"header": "Hi\x00", "body": "Welcome back"},
        {"header": "Hi", "body": "Welcome\x00back"},
        {"header": "Hi", "body": "Welcome back", "x\x00": "y"},
    ],
)
def test_nul_in_the_message_template_is_a_400(api, business, template):
    response = api.post(CONFIG, {"message_template": template}, format="json")
    [message] = _error(response)["message_template"]
    assert "null characters" in message.lower()
    assert _configs(business) == []


def test_nul_in_an_update_changes_nothing(api, business):
    AutoEngagementConfigFactory(business=business)
    before = _configs(business)
    response = api.post(CONFIG, {"message_template": {"header": "\x00", "body": "b"}, "enabled": True}, format="json")
    assert _error(response).keys() == {"message_template"}
    assert _configs(business) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("timezone", "Europe/Paris\x00"), ("timezone", "\x00"), ("run_time", "09:00\x00"), ("channels", ["email\x00"])],
)
def test_nul_in_config_fields_is_a_400_naming_the_field(api, business, field, value):
    response = api.post(CONFIG, {field: value}, format="json")
    assert _error(response).keys() == {field}
    assert _configs(business) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "Ann\x00"),
        ("last_name", "\x00"),
        ("email", "ann\x00@example.com"),
        ("phone", "+14155550100\x00"),
        ("push_token", "tok\x00en"),
    ],
)
def test_nul_in_customer_fields_is_a_400_naming_the_field(api, business, field, value):
    assert _error(api.post(CUSTOMERS, {field: value}, format="json")).keys() == {field}
    assert not Customer.objects.exists()
    customer = CustomerFactory(business=business, first_name="Ann", last_name="Lee")
    before = Customer.objects.filter(pk=customer.pk).values().get()
    response = api.patch(f"{CUSTOMERS}/{customer.customer_id}", {field: value}, format="json")
    assert _error(response).keys() == {field}
    assert Customer.objects.filter(pk=customer.pk).values().get() == before


def test_a_trailing_newline_is_not_a_valid_run_time(api, business):
    # "$" matches before a final newline: the pattern must match the whole value.
    assert _error(api.post(CONFIG, {"run_time": "09:00\n"}, format="json")).keys() == {"run_time"}
    assert _configs(business) == []


def test_nul_in_the_last_row_of_a_10000_row_import_is_a_400(api, business):
    rows = [{"external_id": f"crm-{index}", "first_name": "Ann"} for index in range(10_000)]
    rows[-1]["attributes"] = {"note": ["fine", "not\x00fine"]}
    assert _error(api.post(f"{CUSTOMERS}/bulk", {"customers": rows}, format="json")).keys() == {"customers"}
    assert not Customer.objects.exists()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_the_parser_finds_nul_whatever_the_charset(encoding):
    # In UTF-16 the escape is not the six bytes a UTF-8 body would hold: every string is then looked at. (The API's
    # fields refuse NUL too; the parser is the check that covers every field at once.)
    body = '{"note": ["fine", {"deep": "a\\u0000b"}]}'.encode(encoding)
    with pytest.raises(RequestInvalid) as raised:
        JSONParser().parse(io.BytesIO(body), "application/json", {"encoding": encoding})
    assert raised.value.detail == {"note": ["Null characters are not allowed."]}


def test_nul_in_a_key_is_a_400(api, business):
    _error(api.post(CUSTOMERS, {"first\x00name": "Ann"}, format="json"))
    assert not Customer.objects.exists()


def test_nul_in_a_body_that_is_not_an_object_is_a_400(api, business):
    assert _error(api.post(CUSTOMERS, ["\x00"], format="json")).keys() == {"non_field_errors"}


def test_nul_in_login_is_a_400(client):
    response = client.post("/api/auth/login", {"email": "a\x00@b.c", "password": "x\x00" * 8}, "application/json")
    assert _error(response).keys() == {"email", "password"}


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (CUSTOMERS, {"page": "\x00"}),
        (CUSTOMERS, {"limit": "1\x00"}),
        ("/api/auto-engagement/history", {"date_from": "2026-01-01\x00"}),
        ("/api/auto-engagement/stats", {"date_to": "\x00"}),
    ],
)
def test_nul_in_query_parameters_is_a_400(api, business, url, params):
    assert _error(api.get(url, params)).keys() == set(params)


def test_nul_in_the_pass_platform_is_a_400(api, business):
    customer = CustomerFactory(business=business)
    response = api.get(f"{CUSTOMERS}/{customer.customer_id}/pass", {"platform": "apple\x00"})
    assert _error(response).keys() == {"platform"}


# --- 3. time zone names that are not names ---


@pytest.mark.parametrize(
    "name", ["A" * 300, "Europe/" + "x" * 300, "../" * 100, "/etc/passwd", "Europe/Paris/", "Europe", "."]
)
def test_long_or_odd_time_zone_names_are_a_400(api, business, name):
    response = api.post(CONFIG, {"timezone": name}, format="json")
    assert _error(response).keys() == {"timezone"}
    assert _configs(business) == []


@pytest.mark.parametrize(("name", "timezone_name"), [("B", "A" * 300), ("B", "Europe/Paris\x00"), ("B\x00", "UTC")])
def test_business_create_rejects_them_too(db, name, timezone_name):
    with pytest.raises(ValidationError) as raised:
        business_create(name=name, email="b@example.com", password="long enough", timezone_name=timezone_name)
    assert set(raised.value.message_dict) == {"timezone" if name == "B" else "name"}
    assert not Business.objects.exists()


# --- 4. date-times at the edges of the calendar ---


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00-12:00",
        "0001-01-01T00:00:00Z",
        "0001-01-02T00:00:00+14:00",
        "0001-03-01T00:00:00Z",
        "0019-12-31T23:59:59Z",
        "9999-12-31T23:59:59-12:00",
        "9999-12-31T23:59:59.999999Z",
    ],
)
def test_date_times_at_the_edges_of_the_calendar_are_a_400(api, business, occurred_at):
    customer = CustomerFactory(business=business, last_activity_at=None)
    with time_machine.travel(NOW, tick=False):
        response = api.post(f"{CUSTOMERS}/{customer.customer_id}/activity", {"occurred_at": occurred_at}, format="json")
    assert _error(response).keys() == {"occurred_at"}
    customer.refresh_from_db()
    assert customer.last_activity_at is None


# --- 5. junk in path IDs ---


@pytest.mark.parametrize("customer_id", ["%00", "cust_%00", "cust_aaaaaaaaaaaaaaaaaaa%00", "x" * 300, "cust_%0A"])
@pytest.mark.parametrize(("method", "suffix"), [("patch", ""), ("post", "/activity"), ("get", "/pass")])
def test_junk_customer_ids_are_a_404(api, business, customer_id, method, suffix):
    response = getattr(api, method)(f"{CUSTOMERS}/{customer_id}{suffix}", {}, format="json")
    assert _error(response, 404) == {"detail": "No such customer."}


# --- 7. an Apple pass without certificates ---


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({}, "APPLE_PASS_CERT_FILE"),
        ({"APPLE_TEAM_ID": "TEAM", "WALLET_WEB_SERVICE_URL": WEB_SERVICE_URL}, "APPLE_PASS_KEY_FILE"),
        (
            {
                "APPLE_TEAM_ID": "TEAM",
                "WALLET_WEB_SERVICE_URL": WEB_SERVICE_URL,
                "APPLE_PASS_CERT_FILE": "/nonexistent/pass.pem",
                "APPLE_PASS_KEY_FILE": "/nonexistent/pass.key",
                "APPLE_WWDR_CERT_FILE": "/nonexistent/wwdr.pem",
            },
            "APPLE_PASS_CERT_FILE",
        ),
    ],
    ids=["only-the-pass-type", "no-files", "missing-files"],
)
def test_an_apple_pass_without_certificates_is_a_503_naming_what_is_missing(api, business, settings, overrides, named):
    settings.APPLE_PASS_TYPE_ID = PASS_TYPE_ID
    for name, value in overrides.items():
        setattr(settings, name, value)
    wallet_pass = WalletPassFactory(customer=CustomerFactory(business=business), platform="apple")
    detail = _error(api.get(f"{CUSTOMERS}/{wallet_pass.customer.customer_id}/pass"), 503)["detail"]
    assert named in detail
    assert "/nonexistent" not in detail  # the setting is named, the server's paths stay private


# --- 8. huge requests ---


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", CUSTOMERS),
        ("post", CONFIG),
        ("post", "/api/auth/login"),
        ("patch", CUSTOMERS + "/{customer_id}"),
        ("post", CUSTOMERS + "/{customer_id}/activity"),
    ],
)
def test_a_10_mb_body_is_a_json_400(api, business, method, url):
    customer = CustomerFactory(business=business, first_name="Ann")
    response = _send(api, url.format(customer_id=customer.customer_id), json.dumps({"x": "x" * 10_000_000}), method)
    assert "too large" in _error(response)["detail"]
    assert list(Customer.objects.values_list("first_name", flat=True)) == ["Ann"]
    assert _configs(business) == []


def test_too_many_query_parameters_is_a_json_400(api, business):
    response = api.get(CUSTOMERS + "?" + "&".join(f"p{n}=1" for n in range(1001)))
    assert "Too many parameters" in _error(response)["detail"]
