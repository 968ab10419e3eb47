"""POST /api/customers/bulk: upserts by external_id, all or nothing, the single create's rules, fixed queries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import CustomerFactory
from wallet.api import BulkCustomerRowSerializer, customer_rows_validate
from wallet.models import Customer, WalletPass
from wallet.validation import normalise_phone

pytestmark = pytest.mark.django_db

URL = "/api/customers/bulk"
STORED = ("first_name", "last_name", "email", "phone", "push_token", "email_opt_out", "sms_opt_out", "push_opt_out")


def _stored(business) -> dict[str, dict]:
    return {
        row["external_id"]: row
        for row in Customer.objects.filter(business=business).values("external_id", "attributes", *STORED)
    }


def _rows(count: int, prefix: str = "crm") -> list[dict]:
    return [
        {
            "external_id": f"{prefix}-{index}",
            "first_name": f"Ann {index}",
            "email": f"ann{index}@example.com",
            "phone": f"+1 415 555 {index % 10000:04d}",
            "attributes": {"tier": "gold", "points": index},
        }
        for index in range(count)
    ]


def test_rows_create_new_customers_and_update_only_the_given_fields_of_known_ones(api, business):
    known = CustomerFactory(
        business=business, external_id="crm-1", first_name="Old", last_name="Name", email="old@example.com"
    )
    response = api.post(
        URL,
        {
            "customers": [
                {"external_id": "crm-1", "first_name": "New", "sms_opt_out": True},
                {"external_id": "crm-2", "email": "b@example.com", "phone": "+44 20 7946 0958"},
            ]
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {"created": 1, "updated": 1}
    known.refresh_from_db()
    assert (known.first_name, known.last_name, known.email, known.sms_opt_out) == (
        "New",
        "Name",
        "old@example.com",
        True,
    )
    new = Customer.objects.get(business=business, external_id="crm-2")
    assert (new.email, new.phone, new.first_name, new.attributes, new.last_activity_at) == (
        "b@example.com",
        "+442079460958",
        "",
        {},
        None,
    )
    assert new.customer_id.startswith("cust_")
    assert not WalletPass.objects.exists()
    # The same request again updates both.
    assert api.post(URL, {"customers": [{"external_id": "crm-2"}]}, format="json").json() == {
        "created": 0,
        "updated": 1,
    }


def test_bulk_stores_exactly_what_single_creates_store(api, business, other_business):
    rows = [
        {"external_id": "a", "first_name": "  José  ", "last_name": "Ñúñez", "email": " A@Example.com "},
        {"external_id": "b", "phone": "+1 (415) 555-0100", "push_token": "tok", "push_opt_out": True},
        {"external_id": "c", "attributes": {"tier": "gold", "points": 1.5}, "email_opt_out": False},
        {"external_id": "d", "first_name": "   ", "email": "", "phone": ""},
    ]
    assert api.post(URL, {"customers": rows}, format="json").status_code == 200
    from tests.api import client_for

    other = client_for(other_business)
    for row in rows:
        assert other.post("/api/customers", row, format="json").status_code == 201
    assert _stored(business) == _stored(other_business)


def test_ten_thousand_rows_in_one_request(api, business):
    rows = _rows(10_000)
    response = api.post(URL, {"customers": rows}, format="json")
    assert response.json() == {"created": 10_000, "updated": 0}
    for row in rows[::2]:
        row["last_name"] = "Updated"
    response = api.post(URL, {"customers": rows[::2] + _rows(5_000, "new")}, format="json")
    assert response.json() == {"created": 5_000, "updated": 5_000}
    assert Customer.objects.filter(business=business).count() == 15_000
    assert Customer.objects.filter(business=business, last_name="Updated").count() == 5_000
    stored = Customer.objects.get(business=business, external_id="crm-9998")
    assert (stored.phone, stored.attributes, stored.last_name) == (
        "+14155559998",
        {"tier": "gold", "points": 9998},
        "Updated",
    )


def test_more_than_ten_thousand_rows_are_a_400(api, business):
    response = api.post(URL, {"customers": _rows(10_001)}, format="json")
    assert response.status_code == 400
    assert response.json() == {"customers": ["At most 10000 rows per request (there are 10001)."]}
    assert not Customer.objects.exists()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"customers": ["This field is required."]}),
        ({"customers": {}}, {"customers": ["Must be a list."]}),
        ({"customers": [], "extra": 1}, {"extra": ["Unknown field."]}),
    ],
)
def test_a_bad_envelope_is_a_400(api, body, errors):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json() == errors


def test_one_bad_row_rejects_every_row(api, business):
    CustomerFactory(business=business, external_id="crm-0", first_name="Kept")
    rows = _rows(1_000)
    rows[0]["first_name"] = "Changed"
    rows[500]["email"] = "not-an-email"
    rows[700] = {"first_name": "no external_id"}
    rows[900]["wallet_platform"] = "apple"
    rows[901] = "a string"
    response = api.post(URL, {"customers": rows}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"index": 500, "errors": {"email": ["Enter a valid email address."]}},
            {"index": 700, "errors": {"external_id": ["This field is required."]}},
            {"index": 900, "errors": {"wallet_platform": ["Unknown field."]}},
            {"index": 901, "errors": {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}},
        ]
    }
    assert list(Customer.objects.values_list("external_id", "first_name")) == [("crm-0", "Kept")]


def test_an_external_id_twice_in_one_request_is_an_error(api, business):
    rows = [{"external_id": "x"}, {"external_id": "y"}, {"external_id": "x", "first_name": "Which?"}]
    response = api.post(URL, {"customers": rows}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"index": 2, "errors": {"external_id": ["Also given in row 0 of this request."]}}]
    }
    assert not Customer.objects.exists()


def test_another_businesss_external_ids_are_never_touched(api, business, other_business):
    theirs = CustomerFactory(business=other_business, external_id="crm-1", first_name="Theirs")
    assert api.post(URL, {"customers": [{"external_id": "crm-1", "first_name": "Mine"}]}, format="json").json() == {
        "created": 1,
        "updated": 0,
    }
    theirs.refresh_from_db()
    assert theirs.first_name == "Theirs"
    assert Customer.objects.get(business=business).first_name == "Mine"


# Rows the fast path must judge exactly as the serializer: valid ones it takes, and every kind of trouble.
TRICKY_ROWS = [
    {"external_id": "e"},
    {"external_id": " e "},
    {"external_id": ""},
    {"external_id": "   "},
    {"external_id": None},
    {"external_id": 7},
    {"external_id": "x" * 255},
    {"external_id": "x" * 256},
    {"external_id": "e", "first_name": "x" * 100},
    {"external_id": "e", "first_name": "x" * 101},
    {"external_id": "e", "first_name": " " + "x" * 100 + " "},
    {"external_id": "e", "first_name": "bad\ud800surrogate"},
    {"external_id": "e", "last_name": 5},
    {"external_id": "e", "email": "A@B.co"},
    {"external_id": "e", "email": " a@b.co "},
    {"external_id": "e", "email": "a@b"},
    {"external_id": "e", "email": "a" * 250 + "@b.co"},
    {"external_id": "e", "email": None},
    {"external_id": "e", "phone": "+14155550100"},
    {"external_id": "e", "phone": " +1 (415) 555-0100 "},
    {"external_id": "e", "phone": "4155550100"},
    {"external_id": "e", "phone": "+1415555010"},
    {"external_id": "e", "phone": "+1 415 CALL NOW"},
    {"external_id": "e", "phone": "+" + "1" * 40},
    {"external_id": "e", "phone": ""},
    {"external_id": "e", "push_token": "t" * 4096},
    {"external_id": "e", "push_token": "t" * 4097},
    {"external_id": "e", "sms_opt_out": True},
    {"external_id": "e", "sms_opt_out": "true"},
    {"external_id": "e", "sms_opt_out": 1},
    {"external_id": "e", "attributes": {"a": 1, "b": "x"}},
    {"external_id": "e", "attributes": {"bad name": 1}},
    {"external_id": "e", "attributes": {"a": True}},
    {"external_id": "e", "attributes": []},
    {"external_id": "e", "attributes": None},
    {"external_id": "e", "customer_id": "cust_x"},
    {"external_id": "e", "created_at": "2026-01-01"},
    {"external_id": "e", "nickname": "x"},
    [],
    "row",
    None,
]


@pytest.mark.parametrize("row", TRICKY_ROWS, ids=range(len(TRICKY_ROWS)))
def test_the_fast_path_judges_each_row_as_the_serializer_does(row):
    serializer = BulkCustomerRowSerializer(data=row)
    if serializer.is_valid():
        expected = dict(serializer.validated_data)
        if "phone" in expected:
            expected["phone"] = normalise_phone(expected["phone"])
        assert customer_rows_validate([row]) == ([expected], [])
    else:
        assert customer_rows_validate([row]) == ([], [{"index": 0, "errors": serializer.errors}])


def _queries(api, rows) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.post(URL, {"customers": rows}, format="json")
    assert response.status_code == 200, response.json()
    return len(queries)


def test_the_query_count_does_not_grow_with_the_rows(api, business):
    small = _queries(api, _rows(100, "a"))
    large = _queries(api, _rows(10_000, "b"))
    small_updates = _queries(api, _rows(100, "a") + _rows(100, "c"))
    large_updates = _queries(api, _rows(5_000, "b") + _rows(5_000, "d"))
    if connection.vendor == "postgresql":
        assert small == large
        assert small_updates == large_updates
    else:
        # SQLite splits a long INSERT (about 2,300 rows each) and UPDATE (1,000 rows each) under its parameter limit.
        assert large - small <= 5
        assert large_updates - small_updates <= 5 + 10
