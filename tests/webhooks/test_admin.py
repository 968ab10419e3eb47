import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import BusinessFactory
from webhooks import services
from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery():
    business = BusinessFactory()
    endpoint = services.endpoint_create(business=business, url="https://hooks.example.com/in", events=["run.completed"])
    message = WebhookMessage.objects.create(
        endpoint=endpoint,
        business=business,
        type="run.completed",
        payload={"type": "run.completed", "timestamp": timezone.now().isoformat(), "data": {}},
        status="failed",
        attempts=1,
        last_status_code=500,
    )
    WebhookAttempt.objects.create(message=message, number=1, attempted_at=timezone.now(), status_code=500)
    return endpoint


@pytest.mark.parametrize("model", [WebhookEndpoint, WebhookMessage, WebhookAttempt])
def test_pages_load_and_never_show_the_secret(admin_client, delivery, model):
    opts = model._meta
    changelist = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), {"q": "x"})
    assert changelist.status_code == 200
    change = admin_client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[model.objects.first().pk])
    )
    assert change.status_code == 200
    for response in (
        changelist,
        change,
        admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")),
    ):
        assert delivery.secret.encode() not in response.content


def test_read_only(admin_client, delivery):
    assert admin_client.get(reverse("admin:webhooks_webhookendpoint_add")).status_code == 403
    assert admin_client.get(reverse("admin:webhooks_webhookmessage_add")).status_code == 403
    message = WebhookMessage.objects.get()
    page = admin_client.get(reverse("admin:webhooks_webhookmessage_change", args=[message.pk]))
    assert b"500" in page.content  # the attempt's status code, inline
