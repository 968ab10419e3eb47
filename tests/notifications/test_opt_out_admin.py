import pytest
from django.urls import reverse

from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_staff_set_and_clear_opt_outs_in_admin(admin_client):
    customer = CustomerFactory(email_opt_out=True)
    url = reverse("admin:wallet_customer_change", args=[customer.pk])
    page = admin_client.get(url).content.decode()
    for field in ("email_opt_out", "sms_opt_out", "push_opt_out"):
        assert f'name="{field}"' in page

    response = admin_client.post(
        url,
        {
            "business": customer.business.pk,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "email": customer.email,
            "phone": customer.phone,
            "push_token": "",
            "sms_opt_out": "on",
            "push_opt_out": "on",
            "created_at_0": customer.created_at.strftime("%Y-%m-%d"),
            "created_at_1": customer.created_at.strftime("%H:%M:%S"),
            "wallet_passes-TOTAL_FORMS": "0",
            "wallet_passes-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert (customer.email_opt_out, customer.sms_opt_out, customer.push_opt_out) == (False, True, True)
