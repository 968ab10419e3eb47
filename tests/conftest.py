import pytest
from django.db import connection

from notifications.backends import record


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
