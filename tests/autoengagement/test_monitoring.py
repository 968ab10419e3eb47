"""Probes and metrics, as kubelet and Prometheus call them: by the pod's IP, over plain HTTP."""

import datetime as dt
import io

import pytest
from django.core.management import call_command

from tests.factories import AutoEngagementConfigFactory, CustomerFactory

pytestmark = pytest.mark.django_db
POD = {"HTTP_HOST": "10.1.2.3:8000"}


@pytest.fixture
def production(settings):
    """What DEBUG off turns on: a strict host list and the HTTPS redirect."""
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["engage.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    return settings


def test_healthz_answers_a_probe_by_pod_ip_over_http(client, production):
    response = client.get("/healthz", **POD)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert client.get("/api/schema/", **POD).status_code == 400, "other paths keep the host check"


def test_readyz_is_ready_with_the_database_migrated_and_channels_usable(client, production):
    response = client.get("/readyz", **POD)
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_readyz_names_a_live_channel_that_cannot_send(client, production):
    production.SMS_CHANNEL = "twilio"
    production.TWILIO_ACCOUNT_SID = ""
    response = client.get("/readyz", **POD)
    assert response.status_code == 503
    assert any(problem.startswith("notifications.E002: SMS_CHANNEL=twilio") for problem in response.json()["problems"])


def test_metrics_give_each_business_its_last_run_and_the_messages_by_status(client, settings):
    config = AutoEngagementConfigFactory(channels=["email"])
    never = AutoEngagementConfigFactory()
    now = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    CustomerFactory(business=config.business, created_at=now - dt.timedelta(days=40), email="a@example.com")
    CustomerFactory(business=config.business, created_at=now - dt.timedelta(days=40), email="")
    call_command("run_auto_engagement", "--business", config.business.business_id, stdout=io.StringIO())
    text = client.get("/metrics", **POD).content.decode()
    business_id = config.business.business_id
    assert f'autoengagement_last_run_status{{business_id="{business_id}",status="success"}} 1.0' in text
    assert f'autoengagement_last_run_status{{business_id="{never.business.business_id}",status="never"}} 1.0' in text
    [since] = [
        line
        for line in text.splitlines()
        if line.startswith(f'autoengagement_seconds_since_last_success{{business_id="{business_id}"')
    ]
    assert 0 <= float(since.rsplit(" ", 1)[1]) < 60
    assert 'autoengagement_messages{channel="email",status="sent"} 1.0' in text
    assert 'autoengagement_messages{channel="email",status="skipped"} 1.0' in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


def test_metrics_require_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics", **POD).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **POD).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token", **POD).status_code == 200


def test_metrics_count_requests_by_route_never_by_raw_path(client):
    client.get("/api/customers/cust_AAAAAAAAAAAAAAAAAAAA", **POD)
    client.get("/api/schema/", HTTP_HOST="localhost")
    text = client.get("/metrics", **POD).content.decode()
    assert 'route="api/schema/"' in text
    assert "cust_AAAAAAAAAAAAAAAAAAAA" not in text, "ids never become labels"
    assert "http_request_duration_seconds_bucket" in text
