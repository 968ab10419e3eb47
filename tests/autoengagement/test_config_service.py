import pytest
from django.core.exceptions import ValidationError

from autoengagement.exceptions import ConfigNotFound
from autoengagement.models import AutoEngagementConfig
from autoengagement.services.config import config_delete, config_upsert
from tests.factories import AutoEngagementConfigFactory, BusinessFactory

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
