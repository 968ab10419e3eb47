import base64
import datetime as dt
import socket

import pytest
from standardwebhooks import Webhook

from tests.api import client_for
from webhooks.models import WebhookEndpoint, WebhookMessage

pytestmark = pytest.mark.django_db

URL = "/api/webhooks"
EVENTS = ["message.sent", "run.completed"]


def create(api, **body):
    body.setdefault("url", "https://hooks.example.com/in")
    body.setdefault("events", EVENTS)
    return api.post(URL, body, format="json")


def test_create_returns_the_secret_once(api, business, settings):
    response = create(api, url="https://127.0.0.1:8443/in")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert set(data) == {"webhook_id", "url", "events", "secret", "created_at", "disabled_at"}
    assert data["webhook_id"].startswith("whk_") and len(data["webhook_id"]) == 24
    assert data["events"] == EVENTS
    # The Standard Webhooks secret format: the reference library accepts it, and it carries 32 random bytes.
    assert data["secret"].startswith("whsec_")
    Webhook(data["secret"]).sign("evt_x", dt.datetime.now(dt.UTC), "{}")
    assert len(base64.b64decode(data["secret"].removeprefix("whsec_"))) >= 24
    endpoint = WebhookEndpoint.objects.get(webhook_id=data["webhook_id"])
    assert endpoint.business == business and endpoint.secret == data["secret"]

    listed = api.get(URL).json()
    assert listed["count"] == 1
    assert "secret" not in listed["results"][0]
    assert listed["results"][0]["webhook_id"] == data["webhook_id"]


def test_secrets_differ(api):
    first, second = create(api).json(), create(api).json()
    assert first["secret"] != second["secret"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "events"),
        ({"events": ["message.opened"]}, "events"),
        ({"events": "message.sent"}, "events"),
        ({"events": ["message.sent", "message.sent"]}, "events"),
        ({"url": "ftp://hooks.example.com/in"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@hooks.example.com/in"}, "url"),
        ({"url": ""}, "url"),
        ({"secret": "whsec_mine"}, "secret"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, body, field):
    response = create(api, **body)
    assert response.status_code == 400
    assert field in response.json()
    assert not WebhookEndpoint.objects.exists()


def test_every_error_at_once(api):
    response = api.post(URL, {"url": "ftp://x", "events": [], "extra": 1}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"url", "events", "extra"}


def test_missing_fields(api):
    response = api.post(URL, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"url", "events"}


class TestPrivateAddresses:
    """Without WEBHOOK_ALLOW_PRIVATE_URLS: https only, and no host that is or resolves to a private, loopback or
    link-local address."""

    @pytest.fixture(autouse=True)
    def _strict(self, settings, monkeypatch):
        settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
        names = {
            "hooks.example.com": ["93.184.215.14"],
            "intranet.example.com": ["10.1.2.3"],
            "metadata.example.com": ["169.254.169.254"],
            "mixed.example.com": ["93.184.215.14", "192.168.1.5"],
            "v6local.example.com": ["fe80::1"],
            "v6public.example.com": ["2606:4700:4700::1111"],
            "localhost": ["127.0.0.1", "::1"],
        }
        real = socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host not in names:
                if host.endswith(".example.com"):
                    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
                return real(host, port, *args, **kwargs)
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in names[host]
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    @pytest.mark.parametrize(
        "url",
        [
            "https://127.0.0.1/in",
            "https://10.0.0.8/in",
            "https://172.16.4.4/in",
            "https://192.168.0.1/in",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/in",
            "https://0.0.0.0/in",
            "https://[::1]/in",
            "https://[fe80::1]/in",
            "https://[fd00::1]/in",
            "https://[::ffff:127.0.0.1]/in",
            "https://localhost/in",
            "https://intranet.example.com/in",
            "https://metadata.example.com/in",
            "https://mixed.example.com/in",
            "https://v6local.example.com/in",
            "https://nowhere.example.com/in",
            "http://hooks.example.com/in",
        ],
    )
    def test_refused(self, api, url):
        response = create(api, url=url)
        assert response.status_code == 400, url
        assert list(response.json()) == ["url"]

    @pytest.mark.parametrize(
        "url", ["https://hooks.example.com/in", "https://v6public.example.com:8443/in", "https://93.184.215.14/in"]
    )
    def test_public_accepted(self, api, url):
        assert create(api, url=url).status_code == 201


def test_setting_allows_http_and_private_addresses(api):
    assert create(api, url="http://127.0.0.1:9/in").status_code == 201
    assert create(api, url="https://10.0.0.8/in").status_code == 201


def test_delete(api, business):
    webhook_id = create(api).json()["webhook_id"]
    assert api.delete(f"{URL}/{webhook_id}").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert api.delete(f"{URL}/{webhook_id}").status_code == 404


def test_another_business_gets_404(api, other_api):
    webhook_id = create(api).json()["webhook_id"]
    assert other_api.delete(f"{URL}/{webhook_id}").status_code == 404
    assert other_api.get(f"{URL}/{webhook_id}/deliveries").status_code == 404
    assert other_api.get(URL).json()["count"] == 0
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize("webhook_id", ["nope", "whk_" + "a" * 30, "cust_" + "a" * 20, "whk_%00aaaaaaaaaaaaaaaaaaa"])
def test_malformed_ids_are_404(api, webhook_id):
    assert api.delete(f"{URL}/{webhook_id}").status_code == 404


def test_authentication_required(client, business):
    assert client.get(URL).status_code == 401
    assert client.post(URL, {}, content_type="application/json").status_code == 401


def test_list_rejects_unknown_parameters(api):
    response = api.get(URL, {"colour": "blue"})
    assert response.status_code == 400
    assert "colour" in response.json()


def test_deliveries_show_attempts_and_next_retry(api, business, django_assert_max_num_queries):
    from django.utils import timezone

    from webhooks.models import WebhookAttempt

    webhook_id = create(api).json()["webhook_id"]
    endpoint = WebhookEndpoint.objects.get(webhook_id=webhook_id)
    now = timezone.now()
    for index in range(30):
        message = WebhookMessage.objects.create(
            endpoint=endpoint,
            business=business,
            type="message.sent",
            payload={"type": "message.sent", "timestamp": now.isoformat(), "data": {"n": index}},
            attempts=2,
            next_attempt_at=now,
            last_status_code=500,
        )
        for number in (1, 2):
            WebhookAttempt.objects.create(
                message=message, number=number, attempted_at=now, status_code=500, error="HTTP 500", next_attempt_at=now
            )
    client = client_for(business)
    with django_assert_max_num_queries(6):
        response = client.get(f"{URL}/{webhook_id}/deliveries", {"limit": 20})
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 30 and len(data["results"]) == 20
    item = data["results"][0]
    assert item["status"] == "pending" and item["attempts"] == 2 and item["last_status_code"] == 500
    assert item["next_attempt_at"] is not None and item["event_id"].startswith("evt_")
    assert [a["number"] for a in item["attempt_log"]] == [1, 2]
    assert item["attempt_log"][0]["status_code"] == 500
    assert api.get(f"{URL}/{webhook_id}/deliveries", {"page": 9}).status_code == 404
    assert api.get(f"{URL}/{webhook_id}/deliveries", {"limit": 0}).status_code == 400
