import pytest
from django.db import connection
from google.oauth2 import _client as google_oauth_client

from notifications.backends import record

# The headless browser fixture, for every package's browser tests.
pytest_plugins = ["tests.browser"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_google_auth_retries(monkeypatch):
    """google-auth retries a token exchange the token endpoint answered with a transient error, sleeping 1 s, then
    2 s, in between. Tests script each token answer and count token requests: one exchange is one request."""
    monkeypatch.setattr(google_oauth_client, "_can_retry", lambda status_code, response_data: False)


@pytest.fixture(autouse=True)
def _empty_record_outbox():
    record.outbox.clear()
    yield
    record.outbox.clear()


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL); .ci/run runs it there")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)
