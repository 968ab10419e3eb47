"""external_id on single create and update, GET /api/customers/{id}, and the list's filters."""

import pytest
from django.db import IntegrityError

from tests.factories import CustomerFactory
from wallet.models import Customer

pytestmark = pytest.mark.django_db

URL = "/api/customers"


def test_external_id_is_set_on_create_shown_and_changed_on_update(api, business):
    response = api.post(URL, {"first_name": "Ann", "external_id": "crm-1"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["external_id"] == "crm-1"
    detail = f"{URL}/{body['customer_id']}"
    assert api.get(detail).json() == body
    assert api.patch(detail, {"external_id": "crm-2"}, format="json").json()["external_id"] == "crm-2"
    assert api.patch(detail, {"external_id": None}, format="json").json()["external_id"] is None
    assert api.post(URL, {}, format="json").json()["external_id"] is None


def test_external_id_is_unique_per_business_only(api, other_api, business):
    first = api.post(URL, {"external_id": "crm-1"}, format="json").json()
    response = api.post(URL, {"external_id": "crm-1"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"external_id": ["Another customer of this business has this external_id."]}
    other = api.post(URL, {"external_id": "crm-2"}, format="json").json()
    response = api.patch(f"{URL}/{other['customer_id']}", {"external_id": "crm-1"}, format="json")
    assert response.status_code == 400
    assert "external_id" in response.json()
    # Setting a customer's own external_id again is fine; another business may use the same one.
    assert api.patch(f"{URL}/{first['customer_id']}", {"external_id": "crm-1"}, format="json").status_code == 200
    assert other_api.post(URL, {"external_id": "crm-1"}, format="json").status_code == 201
    # Any number of customers without one.
    for _ in range(2):
        assert api.post(URL, {"external_id": None}, format="json").status_code == 201


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "This field may not be blank."),
        ("x" * 256, "Ensure this field has no more than 255 characters."),
        (12, "Must be a string."),
    ],
)
def test_bad_external_ids_are_400s(api, value, message):
    response = api.post(URL, {"external_id": value}, format="json")
    assert response.status_code == 400
    assert response.json() == {"external_id": [message]}


def test_the_database_enforces_external_id_uniqueness_and_non_empty(business):
    CustomerFactory(business=business, external_id="crm-1")
    CustomerFactory(business=business, external_id=None)
    CustomerFactory(business=business, external_id=None)
    with pytest.raises(IntegrityError):
        CustomerFactory(business=business, external_id="crm-1")


def test_the_database_refuses_an_empty_external_id(business):
    with pytest.raises(IntegrityError):
        CustomerFactory(business=business, external_id="")


def test_get_one_customer_and_404s(api, other_api, business):
    customer = CustomerFactory(business=business, first_name="Ann")
    response = api.get(f"{URL}/{customer.customer_id}")
    assert response.status_code == 200
    assert (response.json()["customer_id"], response.json()["first_name"]) == (customer.customer_id, "Ann")
    assert other_api.get(f"{URL}/{customer.customer_id}").status_code == 404
    assert api.get(f"{URL}/cust_{'x' * 20}").status_code == 404
    assert api.get(f"{URL}/not-an-id").status_code == 404


def test_list_filters_are_exact_matches(api, other_api, business):
    ann = CustomerFactory(business=business, email="Ann@Example.com", phone="+14155550100", external_id="crm-ann")
    bob = CustomerFactory(business=business, email="bob@example.com", phone="+14155550101", external_id="crm-bob")
    CustomerFactory(business=business, email="ann@example.com.au")

    def ids(**query):
        response = api.get(URL, query)
        assert response.status_code == 200, response.json()
        return {item["customer_id"] for item in response.json()["results"]}

    assert ids(email="ann@example.com") == {ann.customer_id}  # ignoring case
    assert ids(email="ann@example") == set()  # not a prefix
    assert ids(phone="+1 (415) 555-0101") == {bob.customer_id}  # normalised like the customer's own
    assert ids(external_id="crm-ann") == {ann.customer_id}
    assert ids(external_id="CRM-ANN") == set()
    assert ids(email="ann@example.com", external_id="crm-bob") == set()
    assert ids(email="bob@example.com", page=1, limit=10) == {bob.customer_id}
    assert other_api.get(URL, {"external_id": "crm-ann"}).json()["count"] == 0


def test_unknown_and_bad_list_parameters_are_400s_naming_them(api):
    response = api.get(URL, {"emial": "a@b.c", "sort": "name"})
    assert response.status_code == 400
    assert response.json() == {"emial": ["Unknown field."], "sort": ["Unknown field."]}
    response = api.get(URL, {"phone": "12345"})
    assert response.status_code == 400
    assert list(response.json()) == ["phone"]
    assert api.get(URL, {"limit": 0}).status_code == 400


def test_erased_customers_are_not_listed(api, business):
    CustomerFactory(business=business)
    erased = CustomerFactory(business=business, email="gone@example.com")
    assert api.delete(f"{URL}/{erased.customer_id}").status_code == 204
    assert api.get(URL).json()["count"] == 1
    assert Customer.objects.filter(business=business).count() == 2
