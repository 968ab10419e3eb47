import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from autoengagement.exceptions import ConfigNotFound
from autoengagement.models import AutoEngagementConfig
from autoengagement.services.config import config_delete, config_upsert
from tests.factories import AutoEngagementConfigFactory, BusinessFactory
from wallet.models import Business

pytestmark = pytest.mark.django_db


def test_upsert_creates_then_updates():
    business = BusinessFactory()
    config, created = config_upsert(business=business, data={"inactivity_days": 10})
    assert created
    again, created = config_upsert(business=business, data={"run_time": "07:15"})
    assert not created
    assert again.pk == config.pk
    config.refresh_from_db()
    assert (config.inactivity_days, config.run_time) == (10, "07:15")


def test_upsert_checks_the_shared_rules_itself_and_writes_nothing_on_error():
    business = BusinessFactory()
    with pytest.raises(ValidationError) as caught:
        config_upsert(
            business=business,
            data={"inactivity_days": 400, "channels": ["fax"], "message_template": {"header": "{x}", "body": "b"}},
        )
    assert set(caught.value.message_dict) == {"inactivity_days", "channels", "message_template"}
    assert not AutoEngagementConfig.objects.exists()


@pytest.mark.parametrize("field", ["last_run_status", "total_customers_notified", "config_id", "business"])
def test_upsert_refuses_fields_the_client_may_not_set(field):
    config = AutoEngagementConfigFactory()
    with pytest.raises(ValidationError) as caught:
        config_upsert(business=config.business, data={field: "x"})
    assert list(caught.value.message_dict) == [field]


def test_delete_without_a_config_raises_not_found():
    with pytest.raises(ConfigNotFound):
        config_delete(business=BusinessFactory())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_upserts_wait_for_each_other_and_create_one_config():
    business = BusinessFactory()
    results: list[bool] = []
    errors: list[BaseException] = []

    def upsert(days: int) -> None:
        try:
            _config, created = config_upsert(business=business, data={"inactivity_days": days})
            results.append(created)
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upsert, args=(days,)) for days in (10, 20)]
    with transaction.atomic():
        list(Business.objects.select_for_update().filter(pk=business.pk))
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        assert results == []  # both are waiting for the business row
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert sorted(results) == [False, True]
    assert AutoEngagementConfig.objects.filter(business=business).count() == 1
