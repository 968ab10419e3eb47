import io
import json
import zipfile

import pytest

from tests.factories import CustomerFactory, WalletPassFactory
from wallet.customer_pass import CustomerHasNoPass, customer_pass_response
from wallet.passes import authentication_token
from wallet.tokens import hash_token

pytestmark = pytest.mark.django_db


def test_apple_pass_is_the_signed_pkpass_and_its_token_hash_is_stored(apple_settings):
    wallet_pass = WalletPassFactory(platform="apple")
    response = customer_pass_response(customer=wallet_pass.customer)
    assert response.content_type == "application/vnd.apple.pkpass"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert {"pass.json", "manifest.json", "signature", "icon.png"} <= set(archive.namelist())
        assert json.loads(archive.read("pass.json"))["serialNumber"] == wallet_pass.pass_id
    wallet_pass.refresh_from_db()
    assert wallet_pass.authentication_token_hash == hash_token(authentication_token(pass_id=wallet_pass.pass_id))


def test_google_pass_is_a_save_url(google_settings):
    wallet_pass = WalletPassFactory(platform="google")
    response = customer_pass_response(customer=wallet_pass.customer)
    assert response.data["save_url"].startswith("https://pay.google.com/gp/v/save/")
    assert response.wallet_pass == wallet_pass


def test_platform_chooses_between_two_passes(apple_settings, google_settings):
    apple = WalletPassFactory(platform="apple")
    WalletPassFactory(platform="google", customer=apple.customer)
    assert customer_pass_response(customer=apple.customer, platform="apple").wallet_pass == apple
    assert customer_pass_response(customer=apple.customer).wallet_pass.platform == "google"  # the newest


def test_no_pass_raises(apple_settings):
    customer = CustomerFactory()
    with pytest.raises(CustomerHasNoPass):
        customer_pass_response(customer=customer)
    WalletPassFactory(platform="apple", customer=customer)
    with pytest.raises(CustomerHasNoPass):
        customer_pass_response(customer=customer, platform="google")
