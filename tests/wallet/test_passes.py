import hashlib
import io
import json
import shutil
import subprocess
import zipfile

import pytest
from cryptography.hazmat.primitives.serialization import pkcs7
from django.core.exceptions import ImproperlyConfigured

from tests.factories import WalletPassFactory
from tests.wallet.certs import PASS_TYPE_ID, TEAM_ID, make_chain
from tests.wallet.conftest import WEB_SERVICE_URL
from wallet import passes
from wallet.tokens import hash_token

pytestmark = pytest.mark.django_db


def _unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _openssl_verify(*, signature: bytes, content: bytes, ca_file, tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "signature").write_bytes(signature)
    (tmp_path / "content").write_bytes(content)
    return subprocess.run(
        [
            "openssl", "cms", "-verify", "-binary", "-inform", "DER",
            "-in", str(tmp_path / "signature"), "-content", str(tmp_path / "content"),
            "-CAfile", str(ca_file), "-purpose", "any", "-out", "/dev/null",
        ],
        capture_output=True,
        check=False,
    )  # fmt: skip


@pytest.fixture
def pkpass_files(apple_settings):
    wallet_pass = WalletPassFactory(platform="apple", message_text="We miss you — 20% off this week")
    content = passes.build_pkpass(wallet_pass=wallet_pass, config=passes.load_apple_config())
    return wallet_pass, _unzip(content)


def test_pass_json_is_a_store_card_with_the_message_field_that_has_the_only_change_message(pkpass_files):
    wallet_pass, files = pkpass_files
    pass_json = json.loads(files["pass.json"])
    assert pass_json["formatVersion"] == 1
    assert pass_json["passTypeIdentifier"] == PASS_TYPE_ID
    assert pass_json["teamIdentifier"] == TEAM_ID
    assert pass_json["serialNumber"] == wallet_pass.pass_id
    assert pass_json["webServiceURL"] == WEB_SERVICE_URL
    assert pass_json["organizationName"] == wallet_pass.customer.business.name
    fields = [field for group in pass_json["storeCard"].values() for field in group]
    with_change_message = [field for field in fields if "changeMessage" in field]
    assert with_change_message == [
        {"key": "message", "label": "Message", "value": "We miss you — 20% off this week", "changeMessage": "%@"}
    ]


def test_authentication_token_is_derived_long_enough_and_only_its_hash_stored(pkpass_files):
    wallet_pass, files = pkpass_files
    token = json.loads(files["pass.json"])["authenticationToken"]
    assert len(token) >= 16
    assert token == passes.authentication_token(pass_id=wallet_pass.pass_id)
    assert token != passes.authentication_token(pass_id="pass_" + "x" * 20)
    wallet_pass.refresh_from_db()
    assert wallet_pass.authentication_token_hash == hash_token(token)
    assert token not in wallet_pass.authentication_token_hash


def test_storing_the_token_hash_does_not_change_the_pass_modification_time(apple_settings):
    wallet_pass = WalletPassFactory(platform="apple")
    before = wallet_pass.updated_at
    passes.build_pkpass(wallet_pass=wallet_pass, config=passes.load_apple_config())
    wallet_pass.refresh_from_db()
    assert wallet_pass.authentication_token_hash
    assert wallet_pass.updated_at == before


def test_manifest_has_the_sha1_of_every_file_but_itself_and_the_signature(pkpass_files):
    _, files = pkpass_files
    manifest = json.loads(files["manifest.json"])
    assert set(manifest) == set(files) - {"manifest.json", "signature"}
    assert {"pass.json", "icon.png"} <= set(manifest)
    for name, digest in manifest.items():
        assert digest == hashlib.sha1(files[name]).hexdigest(), name


def test_signature_carries_the_pass_certificate_and_the_wwdr_intermediate(pkpass_files, cert_chain):
    _, files = pkpass_files
    certificates = pkcs7.load_der_pkcs7_certificates(files["signature"])
    assert cert_chain.pass_cert in certificates
    assert cert_chain.wwdr in certificates


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_signature_verifies_against_the_test_chain_and_only_for_this_manifest(pkpass_files, cert_chain, tmp_path):
    _, files = pkpass_files
    good = _openssl_verify(
        signature=files["signature"], content=files["manifest.json"], ca_file=cert_chain.ca_file, tmp_path=tmp_path
    )
    assert good.returncode == 0, good.stderr
    tampered = _openssl_verify(
        signature=files["signature"],
        content=files["manifest.json"].replace(b"{", b"{ ", 1),
        ca_file=cert_chain.ca_file,
        tmp_path=tmp_path,
    )
    assert tampered.returncode != 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_signature_does_not_verify_against_another_root(pkpass_files, tmp_path):
    _, files = pkpass_files
    other = tmp_path / "other"
    other.mkdir()
    other_chain = make_chain(other)
    result = _openssl_verify(
        signature=files["signature"], content=files["manifest.json"], ca_file=other_chain.ca_file, tmp_path=tmp_path
    )
    assert result.returncode != 0


def test_operator_images_replace_the_generated_icon(apple_settings, tmp_path):
    (tmp_path / "icon.png").write_bytes(b"operator icon")
    (tmp_path / "strip.png").write_bytes(b"operator strip")
    apple_settings.APPLE_PASS_IMAGES_DIR = str(tmp_path)
    wallet_pass = WalletPassFactory(platform="apple")
    files = _unzip(passes.build_pkpass(wallet_pass=wallet_pass, config=passes.load_apple_config()))
    assert files["icon.png"] == b"operator icon"
    assert files["strip.png"] == b"operator strip"
    assert "logo.png" not in files


def test_generated_icon_is_a_png():
    icon = passes.pass_images(images_dir="")["icon.png"]
    assert icon.startswith(b"\x89PNG\r\n\x1a\n")


def test_same_text_again_still_changes_the_value_with_the_run_date():
    first = passes.message_value(header="Hi", body="Come back", current="", run_date="2026-11-25")
    assert first == "Hi — Come back"
    again = passes.message_value(header="Hi", body="Come back", current=first, run_date="2026-11-26")
    assert again != first
    assert "2026-11-26" in again


@pytest.mark.parametrize("run_date", ["2026-11-26", ""])
def test_the_value_always_changes_whatever_the_current_value(run_date):
    for current in ("", "Hi — Come back", "Hi — Come back (2026-11-26)", "Hi — Come back (again)"):
        value = passes.message_value(header="Hi", body="Come back", current=current, run_date=run_date)
        assert value != current
        assert value.startswith("Hi — Come back")


def test_missing_settings_are_named(settings):
    settings.APPLE_PASS_TYPE_ID = ""
    settings.APPLE_PASS_CERT_FILE = ""
    with pytest.raises(ImproperlyConfigured, match=r"APPLE_PASS_TYPE_ID.*APPLE_PASS_CERT_FILE"):
        passes.load_apple_config()


def test_wrong_key_password_is_a_configuration_error(apple_settings):
    apple_settings.APPLE_PASS_KEY_PASSWORD = "wrong"
    with pytest.raises(ImproperlyConfigured, match="could not be loaded"):
        passes.load_apple_config()


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("https://example.com/wallet/apple", "wallet/apple/"),
        ("https://example.com/wallet/apple/", "wallet/apple/"),
        ("https://example.com", ""),
        ("", "wallet/apple/"),
    ],
)
def test_web_service_prefix_is_the_path_of_the_url(url, prefix):
    assert passes.web_service_path_prefix(web_service_url=url) == prefix
