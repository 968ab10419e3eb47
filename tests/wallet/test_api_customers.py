import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from tests.factories import CustomerFactory, WalletPassFactory
from wallet.models import Customer, WalletPass
from wallet.services import customer_create, customer_record_activity, customer_update

pytestmark = pytest.mark.django_db

URL = "/api/customers"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CUSTOMER_KEYS = {
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "push_token",
    "email_opt_out",
    "sms_opt_out",
    "push_opt_out",
    "created_at",
    "last_activity_at",
    "attributes",
    "external_id",
    "wallet_passes",
}


def _detail(customer: Customer) -> str:
    return f"{URL}/{customer.customer_id}"


def _activity(customer: Customer) -> str:
    return f"{URL}/{customer.customer_id}/activity"


def _state(customer: Customer) -> dict:
    customer.refresh_from_db()
    return model_to_dict(customer) | {"last_activity_at": customer.last_activity_at}


# --- list ---


def test_list_is_newest_first_with_consent_and_passes(api, business):
    older = CustomerFactory(business=business, created_at=NOW - dt.timedelta(days=2), sms_opt_out=True)
    newer = CustomerFactory(business=business, created_at=NOW - dt.timedelta(days=1))
    wallet_pass = WalletPassFactory(customer=older, platform="google")
    response = api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["next"], body["previous"]) == (2, None, None)
    assert [item["customer_id"] for item in body["results"]] == [newer.customer_id, older.customer_id]
    item = body["results"][1]
    assert set(item) == CUSTOMER_KEYS
    assert (item["email_opt_out"], item["sms_opt_out"], item["push_opt_out"]) == (False, True, False)
    assert item["wallet_passes"] == [{"pass_id": wallet_pass.pass_id, "platform": "google"}]
    assert body["results"][0]["wallet_passes"] == []


def test_list_pages(api, business):
    customers = [CustomerFactory(business=business, created_at=NOW - dt.timedelta(minutes=i)) for i in range(5)]
    body = api.get(URL, {"limit": 2, "page": 3}).json()
    assert body["count"] == 5
    assert [item["customer_id"] for item in body["results"]] == [customers[4].customer_id]
    assert body["next"] is None
    assert "page=2" in body["previous"]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "101"}, {"limit": "all"}, {"page": "0"}, {"page": "x"}])
def test_list_bad_limit_or_page_is_a_400(api, params):
    response = api.get(URL, params)
    assert response.status_code == 400
    assert list(response.json()) == list(params)


def test_list_queries_do_not_grow_with_the_page_size(api, business):
    for i in range(30):
        WalletPassFactory(customer=CustomerFactory(business=business, created_at=NOW - dt.timedelta(minutes=i)))
    counts = []
    for limit in (1, 30):
        with CaptureQueriesContext(connection) as queries:
            assert len(api.get(URL, {"limit": limit}).json()["results"]) == limit
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 4  # session, count, page, passes


def test_list_shows_only_this_businesss_customers(api, other_business):
    CustomerFactory(business=other_business)
    assert api.get(URL).json()["count"] == 0


# --- create ---


def test_create_with_nothing_makes_an_anonymous_customer(api, business):
    with time_machine.travel(NOW, tick=False):
        response = api.post(URL, {}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == CUSTOMER_KEYS
    customer = Customer.objects.get(customer_id=body["customer_id"])
    assert customer.business == business
    assert customer.created_at == NOW
    assert customer.last_activity_at is None
    assert body["created_at"] == "2026-03-01T12:00:00Z"
    assert (body["email_opt_out"], body["sms_opt_out"], body["push_opt_out"]) == (False, False, False)
    assert body["wallet_passes"] == []
    assert not WalletPass.objects.exists()


@pytest.mark.parametrize("platform", ["apple", "google"])
def test_create_with_everything_and_a_wallet_pass(api, business, platform):
    data = {
        "first_name": "Ana",
        "last_name": "Martin",
        "email": "ana@example.com",
        "phone": "+33612345678",
        "push_token": "fcm-token",
        "email_opt_out": True,
        "sms_opt_out": False,
        "push_opt_out": True,
        "wallet_platform": platform,
    }
    response = api.post(URL, data, format="json")
    assert response.status_code == 201
    customer = Customer.objects.get(customer_id=response.json()["customer_id"])
    assert model_to_dict(customer, fields=[key for key in data if key != "wallet_platform"]) == {
        key: value for key, value in data.items() if key != "wallet_platform"
    }
    wallet_pass = WalletPass.objects.get(customer=customer)
    assert wallet_pass.platform == platform
    assert wallet_pass.authentication_token_hash
    assert response.json()["wallet_passes"] == [{"pass_id": wallet_pass.pass_id, "platform": platform}]


def test_create_with_a_null_wallet_platform_makes_no_pass(api):
    assert api.post(URL, {"wallet_platform": None}, format="json").status_code == 201
    assert not WalletPass.objects.exists()


@pytest.mark.parametrize(
    ("phone", "stored"),
    [
        ("+14155550100", "+14155550100"),
        ("+447911123456", "+447911123456"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("", ""),
    ],
)
def test_valid_phones_are_stored_as_e164(api, phone, stored):
    response = api.post(URL, {"phone": phone}, format="json")
    assert response.status_code == 201, response.json()
    assert Customer.objects.get().phone == stored


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", "+123456"),
        ("phone", "+1234567"),
        ("phone", "+1234567890123456"),
        ("phone", "+0123456789"),
        ("phone", "0612345678"),
        ("phone", "+33 6 12 34 56 7"),
        ("phone", "+3361234567a"),
        ("phone", 33612345678),
        ("phone", None),
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("email", 5),
        ("first_name", 5),
        ("first_name", "x" * 101),
        ("last_name", ["Martin"]),
        ("push_token", "x" * 4097),
        ("email_opt_out", "true"),
        ("sms_opt_out", 1),
        ("push_opt_out", None),
        ("wallet_platform", "windows"),
        ("wallet_platform", "Apple"),
        ("customer_id", "cust_AAAAAAAAAAAAAAAAAAAA"),
        ("last_activity_at", "2026-03-01T00:00:00Z"),
        ("business_id", "biz_AAAAAAAAAAAAAAAAAAAA"),
        ("nickname", "Ana"),
    ],
)
def test_create_rejects_each_bad_field_and_writes_nothing(api, field, value):
    response = api.post(URL, {field: value, "wallet_platform": "apple"} | {field: value}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Customer.objects.exists()
    assert not WalletPass.objects.exists()


def test_create_reports_all_errors_at_once(api):
    response = api.post(URL, {"phone": "123", "email": "nope", "sms_opt_out": "no", "colour": "red"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"phone", "email", "sms_opt_out", "colour"}
    assert response.json()["phone"] == ["Enter the number in international E.164 form, e.g. +14155550100."]
    assert response.json()["colour"] == ["Unknown field."]


def test_create_with_malformed_json_is_a_400(api):
    assert api.post(URL, "{", content_type="application/json").status_code == 400
    assert not Customer.objects.exists()


# --- update ---


def test_patch_changes_only_the_given_fields(api, business):
    customer = CustomerFactory(business=business, email="old@example.com", push_token="t")
    before = _state(customer)
    response = api.patch(
        _detail(customer), {"email_opt_out": True, "sms_opt_out": True, "push_token": ""}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["email_opt_out"], response.json()["sms_opt_out"]) == (True, True)
    after = _state(customer)
    assert {key for key in before if before[key] != after[key]} == {"email_opt_out", "sms_opt_out", "push_token"}
    assert after["push_token"] == ""


def test_patch_can_give_consent_back(api, business):
    customer = CustomerFactory(business=business, push_opt_out=True)
    assert api.patch(_detail(customer), {"push_opt_out": False}, format="json").status_code == 200
    assert _state(customer)["push_opt_out"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", "12345"),
        ("email", "nope"),
        ("push_opt_out", "false"),
        ("first_name", None),
        ("wallet_platform", "apple"),
        ("created_at", "2026-01-01T00:00:00Z"),
        ("customer_id", "cust_AAAAAAAAAAAAAAAAAAAA"),
        ("unknown", 1),
    ],
)
def test_patch_rejects_each_bad_field_and_changes_nothing(api, business, field, value):
    customer = CustomerFactory(business=business)
    before = _state(customer)
    response = api.patch(_detail(customer), {field: value, "first_name": "Changed"} | {field: value}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert _state(customer) == before


def test_patch_unknown_customer_is_a_404(api):
    response = api.patch(f"{URL}/cust_AAAAAAAAAAAAAAAAAAAA", {"sms_opt_out": True}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such customer."}


# --- activity ---


def test_activity_defaults_to_now(api, business):
    customer = CustomerFactory(business=business, last_activity_at=NOW - dt.timedelta(days=30))
    with time_machine.travel(NOW, tick=False):
        response = api.post(_activity(customer))
    assert response.status_code == 200
    assert response.json()["last_activity_at"] == "2026-03-01T12:00:00Z"
    assert _state(customer)["last_activity_at"] == NOW


def test_activity_with_an_empty_object_defaults_to_now(api, business):
    customer = CustomerFactory(business=business)
    with time_machine.travel(NOW, tick=False):
        assert api.post(_activity(customer), {}, format="json").status_code == 200
    assert _state(customer)["last_activity_at"] == NOW


@pytest.mark.parametrize(
    ("stored", "occurred_at", "expected"),
    [
        (None, "2026-02-01T10:00:00+01:00", dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)),
        (NOW - dt.timedelta(days=30), "2026-02-27T12:00:00Z", dt.datetime(2026, 2, 27, 12, 0, tzinfo=dt.UTC)),
        (NOW - dt.timedelta(days=1), "2026-02-01T12:00:00Z", NOW - dt.timedelta(days=1)),
        (NOW - dt.timedelta(days=1), "2026-02-28T12:00:00Z", NOW - dt.timedelta(days=1)),
        (None, "2026-03-01T12:00:00Z", NOW),
    ],
)
def test_activity_only_moves_forward(api, business, stored, occurred_at, expected):
    customer = CustomerFactory(business=business, last_activity_at=stored)
    with time_machine.travel(NOW, tick=False):
        response = api.post(_activity(customer), {"occurred_at": occurred_at}, format="json")
    assert response.status_code == 200
    assert _state(customer)["last_activity_at"] == expected


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-03-01T12:00:01Z",
        "2026-03-01T13:30:00+01:00",
        "2026-03-01T10:00:00",
        "2026-03-01",
        "yesterday",
        "2026-02-30T10:00:00Z",
        "",
        1772366400,
        None,
    ],
)
def test_activity_rejects_future_naive_or_malformed_times(api, business, occurred_at):
    customer = CustomerFactory(business=business, last_activity_at=None)
    with time_machine.travel(NOW, tick=False):
        response = api.post(_activity(customer), {"occurred_at": occurred_at}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["occurred_at"]
    assert _state(customer)["last_activity_at"] is None


# Found by the schema fuzzer (tests/engagement_site/test_api_fuzz.py): an offset PostgreSQL cannot store was a 500.
@pytest.mark.parametrize(
    ("occurred_at", "message"),
    [
        ("0046-07-08T13:46:04.36-19:15", "The UTC offset must be between -12:00 and +14:00."),
        ("2026-02-01T10:00:00+16:00", "The UTC offset must be between -12:00 and +14:00."),
        ("2026-02-01T10:00:00-12:01", "The UTC offset must be between -12:00 and +14:00."),
        ("0001-01-01T00:00:00+01:00", "Must be an ISO 8601 date and time, e.g. 2026-03-01T09:30:00+01:00."),
    ],
)
def test_activity_rejects_offsets_no_time_zone_uses(api, business, occurred_at, message):
    customer = CustomerFactory(business=business, last_activity_at=None)
    with time_machine.travel(NOW, tick=False):
        response = api.post(_activity(customer), {"occurred_at": occurred_at}, format="json")
    assert response.status_code == 400
    assert response.json() == {"occurred_at": [message]}
    assert _state(customer)["last_activity_at"] is None


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-02-01T23:00:00+14:00", dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)),
        ("2026-01-31T21:00:00-12:00", dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)),
        ("2026-02-01T14:45:00+05:45", dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)),
        ("0046-07-08T13:46:04-10:00", dt.datetime(46, 7, 8, 23, 46, 4, tzinfo=dt.UTC)),
    ],
)
def test_activity_accepts_every_real_offset_and_stores_utc(api, business, occurred_at, expected):
    customer = CustomerFactory(business=business, last_activity_at=None)
    with time_machine.travel(NOW, tick=False):
        response = api.post(_activity(customer), {"occurred_at": occurred_at}, format="json")
    assert response.status_code == 200
    assert _state(customer)["last_activity_at"] == expected


def test_activity_rejects_unknown_fields(api, business):
    customer = CustomerFactory(business=business)
    response = api.post(_activity(customer), {"when": "2026-03-01T10:00:00Z"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"when": ["Unknown field."]}
    assert _state(customer)["last_activity_at"] is None


def test_activity_for_an_unknown_customer_is_a_404(api):
    assert api.post(f"{URL}/cust_AAAAAAAAAAAAAAAAAAAA/activity").status_code == 404
    assert api.post(f"{URL}/not-even-an-id/activity").status_code == 404


def test_recording_activity_locks_the_customer_and_never_moves_back(business):
    customer = CustomerFactory(business=business, last_activity_at=NOW)
    with CaptureQueriesContext(connection) as queries:
        customer_record_activity(customer=customer, occurred_at=NOW - dt.timedelta(hours=1), now=NOW)
    # An older visit: the locked read sees it changes nothing, so nothing is written.
    assert not [query["sql"] for query in queries if query["sql"].startswith("UPDATE")]
    assert customer.last_activity_at == NOW
    with CaptureQueriesContext(connection) as queries:
        customer_record_activity(
            customer=customer, occurred_at=NOW + dt.timedelta(hours=1), now=NOW + dt.timedelta(hours=2)
        )
    updates = [query["sql"] for query in queries if query["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    assert "last_activity_at" in updates[0]
    if connection.vendor == "postgresql":
        assert any("FOR UPDATE" in query["sql"] for query in queries)
    assert _state(customer)["last_activity_at"] == NOW + dt.timedelta(hours=1)


def test_recording_activity_refuses_naive_and_future_times(business):
    customer = CustomerFactory(business=business)
    with pytest.raises(ValidationError):
        customer_record_activity(customer=customer, occurred_at=dt.datetime(2026, 3, 1, 10), now=NOW)
    with pytest.raises(ValidationError):
        customer_record_activity(customer=customer, occurred_at=NOW + dt.timedelta(seconds=1), now=NOW)
    assert _state(customer)["last_activity_at"] is None


# --- tenant isolation ---


# --- attributes ---

ATTRIBUTES = {"tier": "gold", "points": 120, "ratio": 0.25, "offer_code": ""}


def test_create_with_attributes_stores_and_returns_them(api, business):
    response = api.post(URL, {"first_name": "Ana", "attributes": ATTRIBUTES}, format="json")
    assert response.status_code == 201
    assert response.json()["attributes"] == ATTRIBUTES
    customer = Customer.objects.get(customer_id=response.json()["customer_id"])
    assert customer.attributes == ATTRIBUTES
    assert isinstance(customer.attributes["points"], int)


def test_a_customer_created_without_attributes_has_an_empty_object(api):
    response = api.post(URL, {}, format="json")
    assert response.json()["attributes"] == {}
    assert Customer.objects.get().attributes == {}


def test_list_shows_attributes(api, business):
    CustomerFactory(business=business, attributes={"tier": "silver", "visits": 3})
    CustomerFactory(business=business)
    items = api.get(URL).json()["results"]
    assert sorted((item["attributes"] for item in items), key=len) == [{}, {"tier": "silver", "visits": 3}]


def test_patch_replaces_the_whole_attributes_object(api, business):
    customer = CustomerFactory(business=business, attributes={"tier": "silver", "points": 10})
    before = _state(customer)
    response = api.patch(_detail(customer), {"attributes": {"points": 25}}, format="json")
    assert response.status_code == 200
    assert response.json()["attributes"] == {"points": 25}
    after = _state(customer)
    assert after["attributes"] == {"points": 25}
    assert {key for key in before if before[key] != after[key]} == {"attributes"}


def test_patch_with_an_empty_object_removes_every_attribute(api, business):
    customer = CustomerFactory(business=business, attributes={"tier": "silver"})
    assert api.patch(_detail(customer), {"attributes": {}}, format="json").json()["attributes"] == {}
    assert _state(customer)["attributes"] == {}


def test_patch_without_attributes_keeps_them(api, business):
    customer = CustomerFactory(business=business, attributes={"tier": "silver"})
    response = api.patch(_detail(customer), {"first_name": "Bea"}, format="json")
    assert response.json()["attributes"] == {"tier": "silver"}
    assert _state(customer)["attributes"] == {"tier": "silver"}


BAD_ATTRIBUTES = [
    ([], ["Must be an object of names to strings or numbers."]),
    ("tier=gold", ["Must be an object of names to strings or numbers."]),
    (None, ["This field may not be null."]),
    ({"": "x"}, ["'': a name must be 1 to 64 letters, digits or underscores."]),
    ({"a" * 65: "x"}, [f"'{'a' * 65}': a name must be 1 to 64 letters, digits or underscores."]),
    ({"tier-name": "x"}, ["'tier-name': a name must be 1 to 64 letters, digits or underscores."]),
    ({"attributes.tier": "x"}, ["'attributes.tier': a name must be 1 to 64 letters, digits or underscores."]),
    ({"vip": True}, ["'vip': must be a string or a number."]),
    ({"tier": None}, ["'tier': must be a string or a number."]),
    ({"tier": ["gold"]}, ["'tier': must be a string or a number."]),
    ({"tier": {"name": "gold"}}, ["'tier': must be a string or a number."]),
    ({"code": "x" * 501}, ["'code': a text may have at most 500 characters (it has 501)."]),
    ({"id": 2**53}, [f"'id': an integer must be between -{2**53 - 1} and {2**53 - 1}; send it as text."]),
    ({f"k{i}": i for i in range(51)}, ["At most 50 attributes are allowed (there are 51)."]),
]


@pytest.mark.parametrize(("attributes", "messages"), BAD_ATTRIBUTES)
def test_create_with_bad_attributes_is_a_400_naming_the_key_and_writes_nothing(api, business, attributes, messages):
    response = api.post(URL, {"first_name": "Ana", "attributes": attributes, "wallet_platform": "apple"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"attributes": messages}
    assert (Customer.objects.count(), WalletPass.objects.count()) == (0, 0)


@pytest.mark.parametrize(("attributes", "messages"), BAD_ATTRIBUTES)
def test_patch_with_bad_attributes_is_a_400_naming_the_key_and_changes_nothing(api, business, attributes, messages):
    customer = CustomerFactory(business=business, attributes={"tier": "silver"})
    before = _state(customer)
    response = api.patch(_detail(customer), {"first_name": "Changed", "attributes": attributes}, format="json")
    assert response.status_code == 400
    assert response.json() == {"attributes": messages}
    assert _state(customer) == before


@pytest.mark.parametrize(
    ("raw", "messages"),
    [
        ('{"attributes": {"ratio": 1e999}}', ["'ratio': must be a finite number."]),
        ('{"attributes": {"code": "a\\u0000b"}}', ["Null characters are not allowed."]),
        ('{"attributes": {"a\\u0000b": 1}}', ["Null characters are not allowed."]),
    ],
)
def test_attributes_json_no_database_can_store_is_a_400(api, raw, messages):
    response = api.post(URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"attributes": messages}
    assert not Customer.objects.exists()


def test_bad_attributes_are_reported_with_the_other_errors(api):
    response = api.post(URL, {"email": "nope", "attributes": {"ok": 1, "bad name": 2, "v": False}}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "email": ["Enter a valid email address."],
        "attributes": [
            "'bad name': a name must be 1 to 64 letters, digits or underscores.",
            "'v': must be a string or a number.",
        ],
    }


def test_the_service_checks_attributes_itself(business):
    with pytest.raises(ValidationError) as caught:
        customer_create(business=business, attributes={"x": float("nan")})
    assert caught.value.message_dict == {"attributes": ["'x': must be a finite number."]}
    assert not Customer.objects.exists()
    customer = customer_create(business=business, attributes={"x": 1})
    with pytest.raises(ValidationError):
        customer_update(customer=customer, data={"attributes": {"x": [1]}})
    assert _state(customer)["attributes"] == {"x": 1}


def test_another_business_cannot_touch_these_customers_by_id(api, business, other_api):
    customer = CustomerFactory(business=business, last_activity_at=None, sms_opt_out=False)
    WalletPassFactory(customer=customer)
    before = _state(customer)
    assert other_api.patch(_detail(customer), {"sms_opt_out": True}, format="json").status_code == 404
    assert other_api.patch(_detail(customer), {"attributes": {"tier": "x"}}, format="json").status_code == 404
    assert other_api.post(_activity(customer), {}, format="json").status_code == 404
    listed = other_api.get(URL).json()
    assert listed["count"] == 0
    assert customer.customer_id not in str(listed)
    created = other_api.post(URL, {"first_name": "Mallory"}, format="json").json()
    assert Customer.objects.get(customer_id=created["customer_id"]).business != business
    assert _state(customer) == before
    assert api.get(URL).json()["count"] == 1
