"""Helpers for the API tests: a client signed in as a business, and a clean throttle cache per test."""

import secrets

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import BusinessFactory, BusinessSessionFactory
from wallet.models import Business


def client_for(business: Business, *, business_id: str | None = None) -> APIClient:
    """An APIClient sending a fresh valid session token of `business` (and `business_id`, default its own)."""
    token = secrets.token_urlsafe(24)
    BusinessSessionFactory(business=business, token=token)
    client = APIClient()
    client.credentials(HTTP_X_SESSION_TOKEN=token, HTTP_X_BUSINESS_ID=business_id or business.business_id)
    return client


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def business(db) -> Business:
    return BusinessFactory()


@pytest.fixture
def api(business) -> APIClient:
    return client_for(business)


@pytest.fixture
def other_business(db) -> Business:
    return BusinessFactory()


@pytest.fixture
def other_api(other_business) -> APIClient:
    return client_for(other_business)
