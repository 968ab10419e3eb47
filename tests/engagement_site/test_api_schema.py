import io
import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

# Every operation of the contract, with the error codes the schema must document for it.
OPERATIONS = {
    ("/api/auth/login", "post"): {"201", "400", "401", "429"},
    ("/api/auth/logout", "post"): {"204", "401", "403"},
    ("/api/auto-engagement/config", "post"): {"200", "201", "400", "401", "403"},
    ("/api/auto-engagement/config", "get"): {"200", "401", "403", "404"},
    ("/api/auto-engagement/config", "delete"): {"204", "401", "403", "404"},
    ("/api/auto-engagement/history", "get"): {"200", "400", "401", "403"},
    ("/api/auto-engagement/stats", "get"): {"200", "400", "401", "403"},
    ("/api/customers", "get"): {"200", "400", "401", "403"},
    ("/api/customers", "post"): {"201", "400", "401", "403"},
    ("/api/customers/{customer_id}", "patch"): {"200", "400", "401", "403", "404"},
    ("/api/customers/{customer_id}/activity", "post"): {"200", "400", "401", "403", "404"},
}


def test_the_schema_is_valid_openapi_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/customers/{customer_id}/activity" in (tmp_path / "schema.yaml").read_text()


@pytest.fixture
def schema() -> dict:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_schema_documents_every_operation_and_its_errors(schema):
    for (path, method), codes in OPERATIONS.items():
        operation = schema["paths"][path][method]
        assert codes <= set(operation["responses"]), (path, method)


def test_business_endpoints_take_an_api_key_or_both_headers_and_login_needs_none(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from POST /api/api-keys, as Authorization: Bearer <key>.",
    }
    headers = {name: scheme for name, scheme in schemes.items() if name != "ApiKey"}
    assert {scheme["name"] for scheme in headers.values()} == {"X-Session-Token", "X-Business-Id"}
    assert all(scheme["in"] == "header" for scheme in headers.values())
    for (path, method), _codes in OPERATIONS.items():
        security = schema["paths"][path][method].get("security")
        if path == "/api/auth/login":
            assert not security or security == [{}]
        else:
            assert security == [{"ApiKey": []}, {"SessionToken": [], "BusinessId": []}], (path, method)


def test_the_schema_has_request_and_response_shapes(schema):
    config_post = schema["paths"]["/api/auto-engagement/config"]["post"]
    request_ref = config_post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request_schema = schema["components"]["schemas"][request_ref.rsplit("/", 1)[1]]
    assert {"inactivity_days", "message_template", "channels", "run_time", "timezone", "enabled"} <= set(
        request_schema["properties"]
    )
    history = schema["paths"]["/api/auto-engagement/history"]["get"]
    assert {"page", "limit", "date_from", "date_to"} <= {parameter["name"] for parameter in history["parameters"]}
    page_ref = history["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page_schema = schema["components"]["schemas"][page_ref.rsplit("/", 1)[1]]
    assert {"count", "next", "previous", "results"} <= set(page_schema["properties"])


def test_the_docs_page_loads_only_local_files():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(reference.endswith("swagger-ui-bundle.js") for reference in references)
    assert all(reference.startswith("/static/drf_spectacular_sidecar/") for reference in references), references
    assert "//" not in "".join(references)
    assert "/api/schema/" in html


def test_the_docs_assets_exist_in_the_static_files():
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css")


def test_the_command_can_print_the_schema():
    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    assert '"openapi": "3.0.3"' in out.getvalue()


def test_the_stats_operation_documents_its_dates_and_its_result(schema):
    operation = schema["paths"]["/api/auto-engagement/stats"]["get"]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {"date_from", "date_to"}
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    properties = schema["components"]["schemas"][ref]["properties"]
    assert {"channels", "reached", "holdout", "reactivated", "reactivation_rate", "uplift", "daily"} <= set(properties)
