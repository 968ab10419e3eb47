"""Apple Wallet passes: pass.json, manifest.json, the detached PKCS #7 signature and the zipped .pkpass.

A pass's serialNumber is its pass_id. Its authenticationToken is never stored: it is derived from the pass_id
with an HMAC under SECRET_KEY (so it can be written into every regenerated pass.json) and only its SHA-256 is
stored, which is what the web service compares. Rotating SECRET_KEY therefore changes every token: passes
already on devices stop authenticating until they are re-issued.
"""

import datetime as dt
import hashlib
import io
import json
import logging
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import constant_time_compare, salted_hmac

from wallet.models import WalletPass
from wallet.tokens import hash_token

logger = logging.getLogger(__name__)

PKPASS_CONTENT_TYPE = "application/vnd.apple.pkpass"
MESSAGE_FIELD_KEY = "message"
DEFAULT_WEB_SERVICE_PATH = "/wallet/apple/"
_TOKEN_SALT = "wallet.apple.authentication_token"
_NOT_LOADED = "Apple Wallet certificate or key could not be loaded"


@dataclass(frozen=True)
class AppleConfig:
    """What signing a pass and pushing to APNs needs, loaded from settings when a backend or view needs it."""

    pass_type_id: str
    team_id: str
    cert_file: str
    key_file: str
    key_password: str
    web_service_url: str
    certificate: x509.Certificate
    private_key: pkcs7.PKCS7PrivateKeyTypes
    wwdr_certificate: x509.Certificate
    images_dir: str = ""


def load_apple_config() -> AppleConfig:
    """Read and parse the Apple settings; raise ImproperlyConfigured naming what is missing or unreadable."""
    required = {
        "APPLE_PASS_TYPE_ID": settings.APPLE_PASS_TYPE_ID,
        "APPLE_TEAM_ID": settings.APPLE_TEAM_ID,
        "APPLE_PASS_CERT_FILE": settings.APPLE_PASS_CERT_FILE,
        "APPLE_PASS_KEY_FILE": settings.APPLE_PASS_KEY_FILE,
        "APPLE_WWDR_CERT_FILE": settings.APPLE_WWDR_CERT_FILE,
        "WALLET_WEB_SERVICE_URL": settings.WALLET_WEB_SERVICE_URL,
    }
    if missing := [name for name, value in required.items() if not value]:
        raise ImproperlyConfigured(f"Apple Wallet needs {', '.join(missing)}.")
    password = settings.APPLE_PASS_KEY_PASSWORD.encode() or None
    certificate = _load_pem("APPLE_PASS_CERT_FILE", x509.load_pem_x509_certificate)
    private_key = _load_pem("APPLE_PASS_KEY_FILE", lambda data: serialization.load_pem_private_key(data, password))
    wwdr_certificate = _load_pem("APPLE_WWDR_CERT_FILE", x509.load_pem_x509_certificate)
    if _public_bytes(certificate.public_key()) != _public_bytes(private_key.public_key()):
        # Signing would still "work", and Wallet would refuse every pass.
        raise ImproperlyConfigured(f"{_NOT_LOADED}: APPLE_PASS_KEY_FILE is not the key of APPLE_PASS_CERT_FILE.")
    return AppleConfig(
        pass_type_id=settings.APPLE_PASS_TYPE_ID,
        team_id=settings.APPLE_TEAM_ID,
        cert_file=settings.APPLE_PASS_CERT_FILE,
        key_file=settings.APPLE_PASS_KEY_FILE,
        key_password=settings.APPLE_PASS_KEY_PASSWORD,
        web_service_url=settings.WALLET_WEB_SERVICE_URL,
        certificate=certificate,
        private_key=private_key,
        wwdr_certificate=wwdr_certificate,
        images_dir=settings.APPLE_PASS_IMAGES_DIR,
    )


def _load_pem(setting: str, load: Callable[[bytes], Any]) -> Any:
    """Read and parse the file a setting names; ImproperlyConfigured names the setting (the path stays private:
    the message reaches API clients in the 503)."""
    try:
        data = Path(getattr(settings, setting)).read_bytes()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ImproperlyConfigured(f"{_NOT_LOADED}: {setting}: {reason}.") from exc
    try:
        return load(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # not PEM, wrong or missing key password
        raise ImproperlyConfigured(f"{_NOT_LOADED}: {setting}: {exc}") from exc


def _public_bytes(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def web_service_path_prefix(*, web_service_url: str) -> str:
    """The URL path (no leading slash, with a trailing one) the web service is served under, from webServiceURL."""
    path = urlsplit(web_service_url).path if web_service_url else DEFAULT_WEB_SERVICE_PATH
    path = path.strip("/")
    return f"{path}/" if path else ""


def authentication_token(*, pass_id: str) -> str:
    """The pass's web-service token: an HMAC of its pass_id under SECRET_KEY (64 hex characters)."""
    return salted_hmac(_TOKEN_SALT, pass_id, algorithm="sha256").hexdigest()


def authentication_token_matches(*, wallet_pass: WalletPass, token: str) -> bool:
    """Compare the token a device sent with the stored hash, in constant time."""
    stored = wallet_pass.authentication_token_hash
    return bool(stored) and constant_time_compare(hash_token(token), stored)


def message_value(*, header: str, body: str, current: str, run_date: str, retry: bool = False) -> str:
    """The new `message` field value: the text, made to differ from the current value so Apple shows it again.

    A retry of the same message leaves a value this message already set as it is: a device that got the first
    push must not show the message a second time."""
    text = " — ".join(part for part in (header.strip(), body.strip()) if part)
    if retry and current in (text, f"{text} ({run_date})"):
        return current
    if text == current:
        # Longer than the current value, so different from it, whatever the text; the date says which message it is.
        return f"{text} ({run_date})" if run_date else f"{text} (again)"
    return text


def pass_json(*, wallet_pass: WalletPass, config: AppleConfig, token: str) -> dict:
    """The pass.json of a store card (Apple's loyalty style) whose `message` field alone has a changeMessage."""
    customer = wallet_pass.customer
    business = customer.business
    member = " ".join(part for part in (customer.first_name, customer.last_name) if part) or customer.customer_id
    message = {"key": MESSAGE_FIELD_KEY, "label": "Message", "value": wallet_pass.message_text, "changeMessage": "%@"}
    return {
        "formatVersion": 1,
        "passTypeIdentifier": config.pass_type_id,
        "teamIdentifier": config.team_id,
        "serialNumber": wallet_pass.pass_id,
        "webServiceURL": config.web_service_url,
        "authenticationToken": token,
        "organizationName": business.name,
        "description": f"{business.name} loyalty card",
        "logoText": business.name,
        "sharingProhibited": True,
        "barcodes": [{"format": "PKBarcodeFormatQR", "message": customer.customer_id, "messageEncoding": "iso-8859-1"}],
        "storeCard": {
            "primaryFields": [{"key": "member", "label": "Member", "value": member}],
            "secondaryFields": [message],
            "backFields": [{"key": "customer", "label": "Customer number", "value": customer.customer_id}],
        },
    }


@cache
def _placeholder_png(*, size: int) -> bytes:
    """A plain square PNG: Wallet refuses a pass without icon.png, and operators may not have provided images."""
    row = b"\x00" + b"\x33\x66\x99" * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    )


def pass_images(*, images_dir: str) -> dict[str, bytes]:
    """The pass's images: the operator's PNGs from APPLE_PASS_IMAGES_DIR, else a generated icon."""
    if images_dir:
        try:
            images = {path.name: path.read_bytes() for path in sorted(Path(images_dir).glob("*.png"))}
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise ImproperlyConfigured(f"APPLE_PASS_IMAGES_DIR could not be read: {reason}.") from exc
        if "icon.png" in images:
            return images
        logger.warning("APPLE_PASS_IMAGES_DIR has no icon.png; using a generated icon", extra={"dir": images_dir})
    return {
        "icon.png": _placeholder_png(size=29),
        "icon@2x.png": _placeholder_png(size=58),
        "logo.png": _placeholder_png(size=50),
    }


def manifest(*, files: dict[str, bytes]) -> bytes:
    """manifest.json: each file's SHA-1 hex digest, as Wallet checks it."""
    digests = {name: hashlib.sha1(content).hexdigest() for name, content in sorted(files.items())}
    return json.dumps(digests, indent=2).encode()


def sign_manifest(*, manifest_bytes: bytes, config: AppleConfig) -> bytes:
    """A detached DER PKCS #7 signature of the manifest by the pass certificate, carrying the WWDR intermediate."""
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(manifest_bytes)
        .add_signer(config.certificate, config.private_key, hashes.SHA256())
        .add_certificate(config.wwdr_certificate)
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )


def build_pkpass(*, wallet_pass: WalletPass, config: AppleConfig) -> bytes:
    """The signed .pkpass of an Apple pass; stores the hash of its authentication token when missing or stale."""
    token = authentication_token(pass_id=wallet_pass.pass_id)
    token_hash = hash_token(token)
    if wallet_pass.authentication_token_hash != token_hash:
        # update(), not save(): storing the hash must not change the pass's modification time.
        WalletPass.objects.filter(pk=wallet_pass.pk).update(authentication_token_hash=token_hash)
        wallet_pass.authentication_token_hash = token_hash
    files = {"pass.json": json.dumps(pass_json(wallet_pass=wallet_pass, config=config, token=token)).encode()}
    files.update(pass_images(images_dir=config.images_dir))
    files["manifest.json"] = manifest(files=files)
    files["signature"] = sign_manifest(manifest_bytes=files["manifest.json"], config=config)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def pass_last_modified(*, wallet_pass: WalletPass) -> dt.datetime:
    """The pass's modification time to whole seconds, as HTTP dates carry it."""
    return wallet_pass.updated_at.replace(microsecond=0)


def next_modified(*, current: dt.datetime, now: dt.datetime) -> dt.datetime:
    """A pass's new modification time when it changes: now, but always in a later whole second than `current`'s
    (Last-Modified has whole seconds: a device holding the old one would otherwise get 304 and miss the change)."""
    return max(now, current.replace(microsecond=0) + dt.timedelta(seconds=1))
