"""A throw-away certificate chain like Apple's: a root CA, a WWDR-like intermediate and a Pass Type ID certificate
(plus a server certificate for the local APNs stand-in), generated with cryptography."""

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASS_TYPE_ID = "pass.com.example.autoengagement"
TEAM_ID = "ABCDE12345"
KEY_PASSWORD = "test-key-password"


@dataclass(frozen=True)
class CertChain:
    ca_file: Path
    wwdr_file: Path
    pass_cert_file: Path
    pass_key_file: Path
    server_cert_file: Path
    server_key_file: Path
    ca: x509.Certificate
    wwdr: x509.Certificate
    pass_cert: x509.Certificate


def _name(common_name: str, **extra: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if "uid" in extra:
        attributes.append(x509.NameAttribute(NameOID.USER_ID, extra["uid"]))
    if "ou" in extra:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, extra["ou"]))
    return x509.Name(attributes)


def _certificate(
    *,
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    ca: bool,
    extensions: list[x509.ExtensionType] = (),
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey, password: str = "") -> bytes:
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def make_chain(directory: Path) -> CertChain:
    """Write the chain's PEM files to `directory`; the pass key is password-protected like an exported one."""
    ca_key, wwdr_key, pass_key, server_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(4)
    )
    ca_name = _name("Test Root CA")
    ca = _certificate(subject=ca_name, key=ca_key, issuer=ca_name, issuer_key=ca_key, ca=True)
    wwdr_name = _name("Test Worldwide Developer Relations CA", ou="G4")
    wwdr = _certificate(subject=wwdr_name, key=wwdr_key, issuer=ca_name, issuer_key=ca_key, ca=True)
    pass_cert = _certificate(
        subject=_name(f"Pass Type ID: {PASS_TYPE_ID}", uid=PASS_TYPE_ID, ou=TEAM_ID),
        key=pass_key,
        issuer=wwdr_name,
        issuer_key=wwdr_key,
        ca=False,
        extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])],
    )
    server_cert = _certificate(
        subject=_name("localhost"),
        key=server_key,
        issuer=ca_name,
        issuer_key=ca_key,
        ca=False,
        extensions=[
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        ],
    )
    files = {
        "ca.pem": _pem(ca),
        "wwdr.pem": _pem(wwdr),
        "pass_cert.pem": _pem(pass_cert),
        "pass_key.pem": _key_pem(pass_key, KEY_PASSWORD),
        "server_cert.pem": _pem(server_cert),
        "server_key.pem": _key_pem(server_key),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return CertChain(
        ca_file=directory / "ca.pem",
        wwdr_file=directory / "wwdr.pem",
        pass_cert_file=directory / "pass_cert.pem",
        pass_key_file=directory / "pass_key.pem",
        server_cert_file=directory / "server_cert.pem",
        server_key_file=directory / "server_key.pem",
        ca=ca,
        wwdr=wwdr,
        pass_cert=pass_cert,
    )
