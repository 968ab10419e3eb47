import pytest

from tests.api import _clear_cache, api, business, other_api, other_business  # noqa: F401
from tests.webhooks.receiver import Receiver


@pytest.fixture(autouse=True)
def _private_urls_allowed(settings):
    """The receiver listens on 127.0.0.1 over http: allowed only with WEBHOOK_ALLOW_PRIVATE_URLS (tests that check
    the address rules turn it off)."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def receiver():
    with Receiver() as standin:
        yield standin
