import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from tests.api import client_for
from tests.factories import DEFAULT_PASSWORD, AutoEngagementConfigFactory, BusinessFactory, BusinessSessionFactory
from wallet.models import BusinessSession
from wallet.tokens import hash_token

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/login"
LOGOUT = "/api/auth/logout"
CONFIG = "/api/auto-engagement/config"

# Every business endpoint, with a body where it takes one; all of them need a session.
BUSINESS_ENDPOINTS = [
    ("post", LOGOUT),
    ("get", CONFIG),
    ("post", CONFIG),
    ("delete", CONFIG),
    ("get", "/api/auto-engagement/history"),
    ("get", "/api/customers"),
    ("post", "/api/customers"),
    ("patch", "/api/customers/cust_AAAAAAAAAAAAAAAAAAAA"),
    ("post", "/api/customers/cust_AAAAAAAAAAAAAAAAAAAA/activity"),
]


def _login(client: APIClient, **body):
    return client.post(LOGIN, body, format="json")


def _client(token: str, business_id: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_SESSION_TOKEN=token, HTTP_X_BUSINESS_ID=business_id)
    return client


# --- login ---


def test_login_opens_a_session_whose_token_works(settings):
    settings.BUSINESS_SESSION_TTL = 3600
    business = BusinessFactory(email="owner@example.com")
    with time_machine.travel(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC), tick=False):
        response = _login(APIClient(), email="owner@example.com", password=DEFAULT_PASSWORD)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"session_token", "business_id", "expires_at"}
    assert body["business_id"] == business.business_id
    assert body["expires_at"] == "2026-03-01T10:00:00Z"
    session = BusinessSession.objects.get(business=business)
    assert session.token_hash == hash_token(body["session_token"])
    assert body["session_token"] not in session.token_hash
    AutoEngagementConfigFactory(business=business)
    with time_machine.travel(dt.datetime(2026, 3, 1, 9, 59, tzinfo=dt.UTC), tick=False):
        assert _client(body["session_token"], business.business_id).get(CONFIG).status_code == 200


def test_login_email_is_case_insensitive():
    BusinessFactory(email="owner@example.com")
    assert _login(APIClient(), email="  Owner@Example.COM ", password=DEFAULT_PASSWORD).status_code == 201


@pytest.mark.parametrize("email", ["nobody@example.com", "owner@example.com"])
def test_login_unknown_email_and_wrong_password_are_the_same_401(email):
    BusinessFactory(email="owner@example.com")
    password = "wrong-password" if email == "owner@example.com" else DEFAULT_PASSWORD
    response = _login(APIClient(), email=email, password=password)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid email or password."}
    assert response.has_header("WWW-Authenticate")
    assert not BusinessSession.objects.exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"email", "password"}),
        ({"email": "owner@example.com"}, {"password"}),
        ({"password": DEFAULT_PASSWORD}, {"email"}),
        ({"email": "", "password": ""}, {"email", "password"}),
        ({"email": 42, "password": DEFAULT_PASSWORD}, {"email"}),
        ({"email": "owner@example.com", "password": None}, {"password"}),
        ({"email": "owner@example.com", "password": DEFAULT_PASSWORD, "remember": True}, {"remember"}),
    ],
)
def test_login_bad_body_is_a_400_naming_each_field(body, fields):
    BusinessFactory(email="owner@example.com")
    response = _login(APIClient(), **body)
    assert response.status_code == 400
    assert set(response.json()) == fields
    assert not BusinessSession.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", "[]", '"text"', "null"])
def test_login_malformed_or_non_object_json_is_a_400(raw):
    response = APIClient().post(LOGIN, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()


def test_login_is_throttled_per_client_address(settings):
    settings.LOGIN_THROTTLE_RATE = "3/min"
    BusinessFactory(email="owner@example.com")
    client = APIClient(REMOTE_ADDR="10.0.0.1")
    for _ in range(3):
        assert _login(client, email="owner@example.com", password="wrong").status_code == 401
    response = _login(client, email="owner@example.com", password=DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert not BusinessSession.objects.exists()
    # A forged X-Forwarded-For does not buy more attempts; another address has its own budget.
    forged = client.post(
        LOGIN, {"email": "owner@example.com", "password": "x"}, format="json", HTTP_X_FORWARDED_FOR="1.2.3.4"
    )
    assert forged.status_code == 429
    assert (
        _login(APIClient(REMOTE_ADDR="10.0.0.2"), email="owner@example.com", password=DEFAULT_PASSWORD).status_code
        == 201
    )


def test_login_throttle_resets_after_the_period(settings):
    settings.LOGIN_THROTTLE_RATE = "1/min"
    BusinessFactory(email="owner@example.com")
    with time_machine.travel(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC), tick=False) as traveller:
        assert _login(APIClient(), email="owner@example.com", password="wrong").status_code == 401
        assert _login(APIClient(), email="owner@example.com", password=DEFAULT_PASSWORD).status_code == 429
        traveller.shift(61)
        assert _login(APIClient(), email="owner@example.com", password=DEFAULT_PASSWORD).status_code == 201


# --- logout ---


def test_logout_revokes_only_this_session(business):
    first, second = client_for(business), client_for(business)
    AutoEngagementConfigFactory(business=business)
    assert first.post(LOGOUT).status_code == 204
    assert first.get(CONFIG).status_code == 401
    assert first.post(LOGOUT).status_code == 401
    assert second.get(CONFIG).status_code == 200
    assert BusinessSession.objects.filter(business=business, revoked=True).count() == 1


def test_logout_with_a_token_of_another_business_is_a_403_and_revokes_nothing(business, other_business):
    response = client_for(business, business_id=other_business.business_id).post(LOGOUT)
    assert response.status_code == 403
    assert not BusinessSession.objects.filter(revoked=True).exists()


# --- the session headers on every business endpoint ---


@pytest.mark.parametrize(("method", "path"), BUSINESS_ENDPOINTS)
def test_every_business_endpoint_needs_a_session(method, path, business):
    response = getattr(APIClient(), method)(path, {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api", X-Session-Token realm="api"'


@pytest.mark.parametrize(("method", "path"), BUSINESS_ENDPOINTS)
def test_every_business_endpoint_refuses_a_token_for_another_business(method, path, business, other_business):
    client = client_for(other_business, business_id=business.business_id)
    assert getattr(client, method)(path, {}, format="json").status_code == 403


def _session(business, token: str, **fields) -> BusinessSession:
    return BusinessSessionFactory(business=business, token=token, **fields)


def test_unknown_token_is_a_401(business):
    AutoEngagementConfigFactory(business=business)
    _session(business, "the-real-token")
    response = _client("a-guessed-token", business.business_id).get(CONFIG)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid session token."}
    assert response.has_header("WWW-Authenticate")


def test_empty_token_is_a_401(business):
    assert _client("", business.business_id).get(CONFIG).status_code == 401


def test_revoked_token_is_a_401(business):
    AutoEngagementConfigFactory(business=business)
    _session(business, "revoked-token", revoked=True)
    response = _client("revoked-token", business.business_id).get(CONFIG)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


@pytest.mark.parametrize(
    ("offset", "status"), [(dt.timedelta(seconds=-1), 401), (dt.timedelta(0), 401), (dt.timedelta(seconds=1), 200)]
)
def test_token_expires_at_its_expiry(business, offset, status):
    AutoEngagementConfigFactory(business=business)
    now = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    _session(business, "some-token", expires_at=now + offset)
    with time_machine.travel(now, tick=False):
        response = _client("some-token", business.business_id).get(CONFIG)
    assert response.status_code == status
    if status == 401:
        assert "expired" in response.json()["detail"]


def test_session_ttl_setting_bounds_a_login(settings):
    settings.BUSINESS_SESSION_TTL = 60
    business = BusinessFactory(email="owner@example.com")
    AutoEngagementConfigFactory(business=business)
    start = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        token = _login(APIClient(), email="owner@example.com", password=DEFAULT_PASSWORD).json()["session_token"]
    with time_machine.travel(start + dt.timedelta(seconds=59), tick=False):
        assert _client(token, business.business_id).get(CONFIG).status_code == 200
    with time_machine.travel(start + dt.timedelta(seconds=60), tick=False):
        assert _client(token, business.business_id).get(CONFIG).status_code == 401


def test_missing_business_id_is_a_401(business):
    _session(business, "some-token")
    client = APIClient()
    client.credentials(HTTP_X_SESSION_TOKEN="some-token")
    response = client.get(CONFIG)
    assert response.status_code == 401
    assert "X-Business-Id" in response.json()["detail"]


@pytest.mark.parametrize("business_id", ["biz_AAAAAAAAAAAAAAAAAAAA", "not-an-id", "ünïcode"])
def test_a_business_id_that_is_not_the_sessions_is_a_403(business, business_id):
    _session(business, "some-token")
    AutoEngagementConfigFactory(business=business)
    assert _client("some-token", business_id).get(CONFIG).status_code == 403
