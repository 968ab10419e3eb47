"""API keys (wallet.api_keys): created with the key shown once, listed without it, revoked; accepted as
`Authorization: Bearer <key>` on every business endpoint, which the URL resolver lists (a new endpoint is covered
without being named here), with the session's 401/403 rules and no business ever seeing another's data."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.exceptions import NoReverseMatch
from rest_framework.test import APIClient

from tests.factories import AutoEngagementConfigFactory, CustomerFactory, NotificationLogFactory
from wallet.api_keys import api_key_create, api_key_revoke
from wallet.authentication import BusinessSessionRequired
from wallet.models import ApiKey
from wallet.tokens import hash_token
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db
URL = "/api/api-keys"


def bearer(key: str, **headers: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", **headers)
    return client


def test_a_key_is_shown_once_stored_as_its_hash_and_listed_without_it(api, business):
    response = api.post(URL, {"name": "loyalty platform sync"}, format="json")

    assert response.status_code == 201
    created = response.json()
    key = created["key"]
    assert key.startswith("ae_live_") and len(key) == len("ae_live_") + 40
    assert set(created) == {"key_id", "name", "prefix", "created_at", "last_used_at", "key"}
    stored = ApiKey.objects.get(key_id=created["key_id"])
    assert stored.key_hash == hash_token(key) and stored.business == business
    assert key not in {getattr(stored, field.attname) for field in ApiKey._meta.concrete_fields}
    listed = api.get(URL).json()
    assert [item["key_id"] for item in listed["results"]] == [created["key_id"]]
    assert key not in str(listed) and listed["results"][0]["prefix"] == key[:12]


def test_a_key_authenticates_its_business_and_records_its_last_use(business):
    api_key, key = api_key_create(business=business, name="sync")
    customer = CustomerFactory(business=business)

    response = bearer(key).get("/api/customers")

    assert response.status_code == 200
    assert [item["customer_id"] for item in response.json()["results"]] == [customer.customer_id]
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    assert bearer(key, HTTP_X_BUSINESS_ID=business.business_id).get("/api/customers").status_code == 200


def test_revoked_unknown_and_empty_keys_are_401_and_another_business_id_is_403(business, other_business):
    api_key, key = api_key_create(business=business, name="sync")
    for client in (bearer("ae_live_" + "x" * 40), bearer(""), bearer("x" * 5000)):
        response = client.get("/api/customers")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert bearer(key, HTTP_X_BUSINESS_ID=other_business.business_id).get("/api/customers").status_code == 403

    api_key_revoke(business=business, key_id=api_key.key_id)

    assert bearer(key).get("/api/customers").status_code == 401


def test_revoking_a_key_through_the_api(api, business, other_business):
    mine, key = api_key_create(business=business, name="mine")
    theirs, their_key = api_key_create(business=other_business, name="theirs")

    assert api.delete(f"{URL}/{theirs.key_id}").status_code == 404
    assert api.delete(f"{URL}/key_nonsense").status_code == 404
    assert bearer(their_key).get("/api/customers").status_code == 200
    assert api.delete(f"{URL}/{mine.key_id}").status_code == 204
    assert api.delete(f"{URL}/{mine.key_id}").status_code == 404
    assert bearer(key).get("/api/customers").status_code == 401
    assert api.get(URL).json()["results"] == []


def test_bad_key_input_is_a_400_naming_it(api):
    assert api.post(URL, {}, format="json").json() == {"name": ["This field is required."]}
    assert "name" in api.post(URL, {"name": "x" * 101}, format="json").json()
    assert api.post(URL, {"name": "ok", "scope": "all"}, format="json").status_code == 400
    assert not ApiKey.objects.exists()


def test_logging_out_with_a_key_is_refused_and_revokes_nothing(business):
    _, key = api_key_create(business=business, name="sync")
    response = bearer(key).post("/api/auth/logout")
    assert response.status_code == 400
    assert "DELETE /api/api-keys" in response.json()["detail"]
    assert bearer(key).get("/api/customers").status_code == 200


def test_the_admin_creates_a_key_showing_it_once_and_revokes_keys(admin_client, business):
    response = admin_client.post(
        reverse("admin:wallet_apikey_add"), {"business": business.pk, "name": "from staff"}, follow=True
    )
    api_key = ApiKey.objects.get(name="from staff")
    [message] = [str(m) for m in response.context["messages"] if "shown this once" in str(m)]
    key = message.rsplit(" ", 1)[1]
    assert hash_token(key) == api_key.key_hash
    change = admin_client.get(reverse("admin:wallet_apikey_change", args=[api_key.pk])).content.decode()
    assert key not in change and api_key.key_hash not in change
    admin_client.post(reverse("admin:wallet_apikey_changelist"), {"action": "revoke", "_selected_action": [api_key.pk]})
    assert bearer(key).get("/api/customers").status_code == 401


# --- every business endpoint, found in the URL resolver ---


def _business_routes():
    """(name, view class, its methods, parameter names) of every route under /api/ whose view is a business view."""

    def walk(patterns, prefix, namespace):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), namespace, pattern

    for route, namespace, pattern in walk(get_resolver().url_patterns, "", ""):
        view = getattr(pattern.callback, "cls", None)
        if route.lstrip("^").startswith("api/") and view and issubclass(view, BusinessSessionRequired):
            actions = getattr(pattern.callback, "actions", None)
            methods = sorted(actions) if actions else [m for m in ("get", "post", "delete") if hasattr(view, m)]
            yield namespace + pattern.name, methods, list(pattern.pattern.regex.groupindex)


def _path(name: str, parameters: list[str], owned: dict[str, str]) -> str:
    try:
        return reverse(name, kwargs={parameter: owned[parameter] for parameter in parameters})
    except (KeyError, NoReverseMatch) as exc:
        raise AssertionError(f"give the test an object of the other business for {name}'s {parameters}") from exc


def test_every_business_endpoint_takes_a_key_and_never_shows_another_business(business, other_business):
    """Business A's key on every route and method, with B's object ids in the path: B's data never appears; a
    revoked or unknown key is a 401 on every one of them."""
    config = AutoEngagementConfigFactory(business=other_business)
    theirs = CustomerFactory(business=other_business, email="their.customer@example.com", first_name="Theirs")
    log = NotificationLogFactory(config=config, customer=theirs, header="Hello Theirs")
    their_key, _ = api_key_create(business=other_business, name="their key")
    their_webhook = endpoint_create(
        business=other_business, url="https://hooks.example.com/in", events=["run.completed"]
    )
    owned = {"customer_id": theirs.customer_id, "key_id": their_key.key_id, "webhook_id": their_webhook.webhook_id}
    secrets_of_b = {
        other_business.business_id,
        theirs.customer_id,
        theirs.email,
        config.config_id,
        log.notification_id,
        their_key.key_id,
        their_webhook.webhook_id,
        their_webhook.url,
    }
    _, key = api_key_create(business=business, name="mine")
    revoked, revoked_key = api_key_create(business=business, name="old")
    api_key_revoke(business=business, key_id=revoked.key_id)
    routes = list(_business_routes())
    assert {"wallet:customer-list", "wallet:api-key-detail", "wallet:logout"} <= {name for name, _, _ in routes}
    tried = 0
    for name, methods, parameters in routes:
        path = _path(name, parameters, owned)
        for method in methods:
            tried += 1
            response = getattr(bearer(key), method)(path, {}, format="json")
            assert response.status_code not in (401, 403, 500), (method, path, response.status_code)
            raw = b"".join(response.streaming_content) if response.streaming else response.content
            body = raw.decode(errors="replace")
            leaked = [value for value in secrets_of_b if value in body]
            assert not leaked, (method, path, leaked)
            for client in (bearer(revoked_key), bearer("ae_live_unknown")):
                assert getattr(client, method)(path, {}, format="json").status_code == 401, (method, path)
    assert tried >= 12
    theirs.refresh_from_db()
    assert (theirs.first_name, their_key.revoked_at) == ("Theirs", None)
    assert ApiKey.objects.get(pk=their_key.pk).revoked_at is None
    assert type(their_webhook).objects.filter(pk=their_webhook.pk).exists()
