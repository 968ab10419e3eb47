from collections import Counter

import pytest

from notifications.backends import get_backend
from notifications.backends.base import Message
from notifications.consent import annotate_skip_reasons
from tests.factories import BusinessFactory, CustomerFactory
from tests.notifications.providers import live_channels  # noqa: F401 (a fixture)
from wallet.models import Customer

CHANNELS = ("email", "sms", "push")
ADDRESS = {"email": "email", "sms": "phone", "push": "push_token"}

pytestmark = pytest.mark.django_db


def test_every_channel_delivers_each_message_once_through_its_provider(live_channels):  # noqa: F811
    """What the daily run does with a chunk, by hand: consent splits it, each backend sends its share."""
    business = BusinessFactory(name="Demo Coffee")
    for n in range(6):
        no_email = {"email": ""} if n == 2 else {}
        CustomerFactory(business=business, push_token=f"device-{n}", sms_opt_out=n == 1, **no_email)
    rows = annotate_skip_reasons(Customer.objects.filter(business=business).order_by("pk"), channels=CHANNELS)

    results, skipped, log_id = {}, Counter(), 0
    for channel in CHANNELS:
        batch = []
        for customer in rows:
            log_id += 1
            if getattr(customer, f"skip_{channel}"):
                skipped[(channel, getattr(customer, f"skip_{channel}"))] += 1
                continue
            batch.append(
                Message(
                    log_id=log_id,
                    recipient=getattr(customer, ADDRESS[channel]),
                    header=f"We miss you, {customer.first_name}",
                    body="A free coffee is waiting.",
                    customer_id=customer.customer_id,
                    business_name=business.name,
                )
            )
        with get_backend(channel) as backend:
            results[channel] = backend.send_batch(batch)

    assert skipped == {("email", "no address"): 1, ("sms", "opted out"): 1}
    assert [len(results[channel]) for channel in CHANNELS] == [5, 5, 6]
    assert all(result.status == "sent" and result.provider_message_id for rs in results.values() for result in rs)
    assert sorted(r.rcpt_tos[0] for r in live_channels.inbox.received) == sorted(c.email for c in rows if c.email)
    assert Counter(sms["To"] for sms in live_channels.sms) == Counter(c.phone for c in rows if not c.sms_opt_out)
    assert Counter(p["message"]["token"] for p in live_channels.pushes) == Counter(f"device-{n}" for n in range(6))
