"""Schemathesis over the project's own OpenAPI schema, signed in as a business: no 500, no response the schema
does not describe. What it found is pinned as regular tests in the API test modules.

Requests go straight into the WSGI application, inside the test's database transaction, so it runs on SQLite
and PostgreSQL alike. Examples per operation are few (FUZZ_EXAMPLES) to keep the suite fast; raise it locally
to search harder, e.g. `FUZZ_EXAMPLES=500 .venv/bin/pytest tests/engagement_site/test_api_fuzz.py`.
"""

import json
import os
import secrets

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import (
    AutoEngagementConfigFactory,
    BusinessFactory,
    BusinessSessionFactory,
    CustomerFactory,
    NotificationLogFactory,
    WalletPassFactory,
)
from tests.wallet.conftest import (  # noqa: F401 (fixtures)
    apple_settings,
    cert_chain,
    google_service_account,
    google_settings,
    issued_apple_pass,
)

pytestmark = pytest.mark.django_db
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


# Loaded at collection (the schema view needs no database), one test per operation.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Like Django's test client: a request ending must not close the connection that holds the test's
    transaction (close_old_connections would, on PostgreSQL)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _configured(settings, apple_settings, google_settings):  # noqa: F811
    """Wallet passes configured (unconfigured, GET .../pass is a deliberate 503), login unthrottled."""
    # Logins are throttled per address; the fuzzer is one address sending many.
    settings.LOGIN_THROTTLE_RATE = "100000/min"


@pytest.fixture
def business():
    """A business with a config, customers (one with each kind of pass) and history, so requests reach past 404."""
    business = BusinessFactory(timezone="Europe/Paris")
    config = AutoEngagementConfigFactory(business=business, channels=["wallet", "email", "sms", "push"])
    customers = CustomerFactory.create_batch(3, business=business)
    WalletPassFactory(customer=customers[0], platform="google")
    issued_apple_pass(customer=customers[1])
    for customer in customers:
        NotificationLogFactory(config=config, customer=customer)
    return business


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_every_generated_request_as_its_schema_says(case, business):
    # A fresh session per example: a generated logout must not sign the following examples out.
    token = secrets.token_urlsafe(24)
    BusinessSessionFactory(business=business, token=token)
    headers = {"X-Session-Token": token, "X-Business-Id": business.business_id}
    if case.path_parameters and "customer_id" in case.path_parameters:
        # Three times in four, one of the business's own customers instead of a random (unknown) id.
        generated = str(case.path_parameters["customer_id"])
        known = list(business.customers.order_by("pk").values_list("customer_id", flat=True))
        case.path_parameters["customer_id"] = ([*known, generated])[len(generated) % 4]
    case.call_and_validate(headers=headers, checks=CHECKS)


def _operations_with_bodies() -> list[tuple[str, str, list[str]]]:
    """(method, path, top-level body fields) of every operation that takes a JSON body."""
    document = schema.raw_schema
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if not content:
                continue
            body_schema = content["schema"]
            if "$ref" in body_schema:
                body_schema = document["components"]["schemas"][body_schema["$ref"].rsplit("/", 1)[-1]]
            found.append((method, path, sorted(body_schema.get("properties", {})) or ["value"]))
    return found


CONTROL_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), min_size=1, max_size=20)
HOSTILE_VALUE = st.one_of(
    CONTROL_TEXT.map(lambda text: "ok" + text),
    st.integers(min_value=50, max_value=5000).map(lambda depth: "[" * depth + "]" * depth),
    st.just("\x00"),
)


@pytest.mark.parametrize(("method", "path", "fields"), _operations_with_bodies())
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_nul_control_characters_and_deep_nesting_never_get_a_5xx(client, business, method, path, fields, data):
    """NUL and other control characters in any top-level field, and JSON nested thousands deep, answered 4xx or as
    the schema says: never a server error."""
    token = secrets.token_urlsafe(24)
    BusinessSessionFactory(business=business, token=token)
    customer_id = business.customers.order_by("pk").values_list("customer_id", flat=True).first()
    url = path.replace("{customer_id}", customer_id)
    field = data.draw(st.sampled_from(fields))
    value = data.draw(HOSTILE_VALUE)
    body = f'{{"{field}": {value}}}' if value.startswith("[") else json.dumps({field: value})
    response = getattr(client, method)(
        url,
        data=body,
        content_type="application/json",
        HTTP_X_SESSION_TOKEN=token,
        HTTP_X_BUSINESS_ID=business.business_id,
    )
    assert response.status_code < 500, (method, url, body[:80], response.content[:300])
