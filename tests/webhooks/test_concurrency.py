"""Several deliverers at once (PostgreSQL: row locks with skip_locked): every message is sent once, none twice."""

import threading

import pytest
from django.db import connection

from tests.factories import BusinessFactory
from tests.webhooks.factories import endpoint_for, enqueue
from webhooks.delivery import deliver_due
from webhooks.models import WebhookAttempt, WebhookMessage

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_concurrent_deliverers_never_send_one_attempt_twice(receiver):
    business = BusinessFactory()
    endpoint_for(business, receiver)
    enqueue(business, 300)
    barrier = threading.Barrier(3)
    summaries, errors = [], []

    def deliverer():
        try:
            barrier.wait()
            summaries.append(deliver_due(batch_size=20, concurrency=10, prune=False))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliverer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(s.claimed for s in summaries) == 300
    assert all(s.claimed for s in summaries), "every deliverer took a share"
    assert len(receiver.requests) == 300
    assert len(receiver.accepted) == 300 and set(receiver.accepted.values()) == {1}
    assert WebhookMessage.objects.filter(status="delivered").count() == 300
    assert WebhookAttempt.objects.count() == 300
