import pytest
from django.core import signing
from django.test import Client

from notifications.unsubscribe import (
    InvalidUnsubscribeToken,
    UnsubscribeRequest,
    make_unsubscribe_token,
    read_unsubscribe_token,
    unsubscribe_url,
)
from tests.factories import BusinessFactory, CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return CustomerFactory(business=BusinessFactory(name="Demo Coffee"))


def path_for(customer, channel: str = "email") -> str:
    return f"/unsubscribe/{make_unsubscribe_token(customer_id=customer.customer_id, channel=channel)}/"


def test_token_round_trip():
    token = make_unsubscribe_token(customer_id="cust_AAAAAAAAAAAAAAAAAAAA")
    assert read_unsubscribe_token(token=token) == UnsubscribeRequest("cust_AAAAAAAAAAAAAAAAAAAA", "email")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        make_unsubscribe_token(customer_id="cust_AAAAAAAAAAAAAAAAAAAA").replace("cust_A", "cust_B"),
        make_unsubscribe_token(customer_id="cust_AAAAAAAAAAAAAAAAAAAA")[:-2],
        signing.Signer().sign("cust_AAAAAAAAAAAAAAAAAAAA.email"),
        signing.Signer(salt="notifications.unsubscribe").sign("cust_AAAAAAAAAAAAAAAAAAAA.fax"),
    ],
)
def test_forged_or_damaged_tokens_are_rejected(token):
    with pytest.raises(InvalidUnsubscribeToken):
        read_unsubscribe_token(token=token)


def test_the_url_is_absolute_under_the_public_base_url(settings):
    settings.PUBLIC_BASE_URL = "https://engage.example.com/"
    url = unsubscribe_url(customer_id="cust_AAAAAAAAAAAAAAAAAAAA")
    assert url.startswith("https://engage.example.com/unsubscribe/cust_AAAAAAAAAAAAAAAAAAAA.email:")
    assert url.endswith("/")


def test_get_asks_for_confirmation_and_changes_nothing(client, customer):
    response = client.get(path_for(customer))
    assert response.status_code == 200
    content = response.content.decode()
    assert '<form method="post">' in content
    assert "Demo Coffee" in content
    customer.refresh_from_db()
    assert customer.email_opt_out is False


def test_the_confirmation_button_opts_out(client, customer):
    response = client.post(path_for(customer), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert "You're unsubscribed" in response.content.decode()
    customer.refresh_from_db()
    assert customer.email_opt_out is True
    assert (customer.sms_opt_out, customer.push_opt_out) == (False, False)


def test_rfc8058_one_click_post_needs_no_csrf_token(customer):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        path_for(customer), data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.email_opt_out is True


def test_unsubscribing_twice_is_harmless(client, customer):
    assert client.post(path_for(customer)).status_code == 200
    assert client.post(path_for(customer)).status_code == 200
    customer.refresh_from_db()
    assert customer.email_opt_out is True


def test_a_token_for_another_channel_opts_out_of_that_channel(client, customer):
    client.post(path_for(customer, channel="sms"))
    customer.refresh_from_db()
    assert (customer.email_opt_out, customer.sms_opt_out) == (False, True)


def test_a_forged_token_gets_a_400_page_and_opts_nobody_out(client, customer):
    forged = path_for(customer).replace(customer.customer_id, CustomerFactory().customer_id)
    for response in (client.get(forged), client.post(forged)):
        assert response.status_code == 400
        assert "not valid" in response.content.decode()
    assert not type(customer).objects.filter(email_opt_out=True).exists()


def test_a_deleted_customer_still_gets_a_confirmation(client, customer):
    path = path_for(customer)
    customer.delete()
    assert client.post(path).status_code == 200


def test_other_methods_are_refused(client, customer):
    assert client.put(path_for(customer)).status_code == 405


def test_pages_are_not_cached(client, customer):
    assert "no-cache" in client.get(path_for(customer))["Cache-Control"]


@pytest.mark.parametrize("suffix", ["/", ""])
def test_the_one_click_post_is_answered_without_a_redirect_with_or_without_the_trailing_slash(customer, suffix):
    url = path_for(customer).rstrip("/") + suffix
    response = Client(enforce_csrf_checks=True).post(
        url, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.email_opt_out is True
