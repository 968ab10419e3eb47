import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api import _clear_cache, api, business, other_api, other_business  # noqa: F401
from tests.factories import WalletPassFactory
from tests.wallet.apns_server import ApnsStandIn
from tests.wallet.certs import KEY_PASSWORD, PASS_TYPE_ID, TEAM_ID, CertChain, make_chain
from wallet.passes import authentication_token
from wallet.tokens import hash_token

WEB_SERVICE_URL = "https://wallet.example.com/wallet/apple"
GOOGLE_ISSUER_ID = "3388000000012345678"
GOOGLE_TOKEN_URI = "https://oauth2.test.local/token"
GOOGLE_API_BASE = "https://walletobjects.test.local"


@pytest.fixture(scope="session")
def cert_chain(tmp_path_factory) -> CertChain:
    return make_chain(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def apple_settings(settings, cert_chain):
    settings.APPLE_PASS_TYPE_ID = PASS_TYPE_ID
    settings.APPLE_TEAM_ID = TEAM_ID
    settings.APPLE_PASS_CERT_FILE = str(cert_chain.pass_cert_file)
    settings.APPLE_PASS_KEY_FILE = str(cert_chain.pass_key_file)
    settings.APPLE_PASS_KEY_PASSWORD = KEY_PASSWORD
    settings.APPLE_WWDR_CERT_FILE = str(cert_chain.wwdr_file)
    settings.WALLET_WEB_SERVICE_URL = WEB_SERVICE_URL
    settings.APNS_CA_FILE = str(cert_chain.ca_file)
    settings.WALLET_RETRY_BACKOFF = 0.01
    settings.WALLET_MAX_RETRIES = 2
    return settings


@pytest.fixture
def apns_server(cert_chain, apple_settings):
    """The local APNs stand-in, trusting client certificates of the test CA and its WWDR-like intermediate."""
    server = ApnsStandIn(
        cert_file=cert_chain.server_cert_file,
        key_file=cert_chain.server_key_file,
        client_ca_files=[cert_chain.ca_file, cert_chain.wwdr_file],
    )
    server.start()
    apple_settings.APNS_HOST = server.host
    yield server
    server.stop()


@pytest.fixture(scope="session")
def google_service_account(tmp_path_factory) -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "test-key-id",
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "client_email": "wallet@test-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": GOOGLE_TOKEN_URI,
    }
    path = Path(tmp_path_factory.mktemp("google")) / "service-account.json"
    path.write_text(json.dumps(info))
    return {"path": str(path), "info": info, "public_key": key.public_key()}


@pytest.fixture
def google_settings(settings, google_service_account):
    settings.GOOGLE_WALLET_ISSUER_ID = GOOGLE_ISSUER_ID
    settings.GOOGLE_WALLET_CREDENTIALS = google_service_account["path"]
    settings.GOOGLE_WALLET_API_BASE = GOOGLE_API_BASE
    settings.GOOGLE_WALLET_CLASS_ID = "loyalty"
    settings.WALLET_RETRY_BACKOFF = 0.01
    settings.WALLET_MAX_RETRIES = 2
    return settings


def issued_apple_pass(**kwargs):
    """An Apple pass as issued to a device: its token's hash stored; returns (pass, raw token)."""
    wallet_pass = WalletPassFactory(platform="apple", **kwargs)
    token = authentication_token(pass_id=wallet_pass.pass_id)
    wallet_pass.authentication_token_hash = hash_token(token)
    wallet_pass.save(update_fields=["authentication_token_hash"])
    return wallet_pass, token
