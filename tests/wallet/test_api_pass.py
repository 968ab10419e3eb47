import io
import json
import zipfile

import pytest

from tests.factories import CustomerFactory, WalletPassFactory

pytestmark = pytest.mark.django_db


def url(customer):
    return f"/api/customers/{customer.customer_id}/pass"


def test_apple_pass_is_served_as_a_signed_pkpass(api, business, apple_settings):
    wallet_pass = WalletPassFactory(platform="apple", customer=CustomerFactory(business=business))
    response = api.get(url(wallet_pass.customer))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apple.pkpass"
    assert response["Last-Modified"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert json.loads(archive.read("pass.json"))["serialNumber"] == wallet_pass.pass_id
        assert "signature" in archive.namelist()


def test_google_pass_is_a_save_url(api, business, google_settings):
    wallet_pass = WalletPassFactory(platform="google", customer=CustomerFactory(business=business))
    response = api.get(url(wallet_pass.customer))
    assert response.status_code == 200
    assert response.json()["save_url"].startswith("https://pay.google.com/gp/v/save/")


def test_platform_parameter_picks_a_pass_and_is_validated(api, business, apple_settings, google_settings):
    customer = CustomerFactory(business=business)
    WalletPassFactory(platform="apple", customer=customer)
    WalletPassFactory(platform="google", customer=customer)
    assert api.get(url(customer), {"platform": "apple"})["Content-Type"] == "application/vnd.apple.pkpass"
    response = api.get(url(customer), {"platform": "nokia"})
    assert response.status_code == 400
    assert "platform" in response.json()


def test_no_pass_is_404(api, business, apple_settings):
    response = api.get(url(CustomerFactory(business=business)))
    assert response.status_code == 404
    assert response.json()["detail"] == "This customer has no wallet pass."


def test_unconfigured_wallet_is_503_naming_what_is_missing(api, business, settings):
    settings.APPLE_PASS_TYPE_ID = ""
    wallet_pass = WalletPassFactory(platform="apple", customer=CustomerFactory(business=business))
    response = api.get(url(wallet_pass.customer))
    assert response.status_code == 503
    assert "APPLE_PASS_TYPE_ID" in response.json()["detail"]


def test_another_business_customer_pass_is_404(api, other_business, apple_settings):
    wallet_pass = WalletPassFactory(platform="apple", customer=CustomerFactory(business=other_business))
    assert api.get(url(wallet_pass.customer)).status_code == 404


def test_needs_a_session(client, business):
    assert client.get(url(CustomerFactory(business=business))).status_code == 401
