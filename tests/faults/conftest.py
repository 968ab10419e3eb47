"""Shared fixtures of the fault suite (certificates, service-account keys) and the table of deliveries per customer
that tests/faults/test_fault_suite.py collects and prints at the end of the session."""

import functools
import json
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.wallet.certs import CertChain, make_chain

# One row per scenario: provider, fault, customers, expected outcome, max and total deliveries per customer, requests.
DELIVERY_TABLE: list[dict[str, object]] = []


@pytest.fixture(scope="session")
def fault_cert_chain(tmp_path_factory) -> CertChain:
    return make_chain(tmp_path_factory.mktemp("fault-suite-certs"))


@functools.cache
def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def service_account_key(directory: Path, *, token_uri: str, project_id: str = "standin-project") -> Path:
    """A service-account key file whose token_uri is a stand-in's (one RSA key for the whole session: fast)."""
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": _private_key_pem(),
        "client_email": f"sender@{project_id}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    path = Path(directory) / f"service-account-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def delivery_table() -> list[dict[str, object]]:
    return DELIVERY_TABLE


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not DELIVERY_TABLE:
        return
    terminalreporter.section("fault suite: deliveries per customer at each stand-in, over all invocations")
    header = (
        f"{'provider':<8} {'fault':<22} {'customers':>9} {'max/cust':>8} {'total':>5} {'requests':>8}  "
        f"{'after run 1':<12} {'seconds':>7}"
    )
    terminalreporter.write_line(header)
    terminalreporter.write_line("-" * len(header))
    for row in sorted(DELIVERY_TABLE, key=lambda row: (str(row["provider"]), str(row["fault"]))):
        terminalreporter.write_line(
            f"{row['provider']:<8} {row['fault']:<22} {row['customers']:>9} {row['max']:>8} {row['total']:>5} "
            f"{row['requests']:>8}  {row['expect']:<12} {row['seconds']:>7.2f}"
        )
