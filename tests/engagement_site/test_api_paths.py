"""Every API route answers with and without its trailing slash, the same and without a redirect; a path under /api/
that matches no route is a JSON 404. The routes are read from the URL resolver, so a new one is covered too."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.exceptions import NoReverseMatch
from rest_framework.test import APIClient

from tests.factories import DEFAULT_PASSWORD, BusinessFactory

pytestmark = pytest.mark.django_db

# Values tried for a route's parameters, in turn, until one fits its converter or regex.
SAMPLE_VALUES = ("cust_AAAAAAAAAAAAAAAAAAAA", "1", "abc", "00000000-0000-4000-8000-000000000001")


def _walk(patterns, prefix: str, namespace: str):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), namespace, pattern


def _example_path(route: str, namespace: str, pattern: URLPattern) -> str:
    assert pattern.name, f"the API route {route!r} has no name: name it, so it can be reversed"
    parameters = list(pattern.pattern.regex.groupindex)
    for value in SAMPLE_VALUES:
        try:
            return reverse(namespace + pattern.name, kwargs=dict.fromkeys(parameters, value))
        except NoReverseMatch:
            continue
    raise AssertionError(f"no sample value fits the parameters of {route!r}")


def api_paths() -> list[str]:
    """A concrete path of every URL pattern under /api/, in the form its pattern declares."""
    found = [
        _example_path(route, namespace, pattern)
        for route, namespace, pattern in _walk(get_resolver().url_patterns, "", "")
        if route.lstrip("^").startswith("api/")
    ]
    return sorted(set(found))


def other_form(path: str) -> str:
    return path.removesuffix("/") if path.endswith("/") else path + "/"


def test_the_resolver_lists_the_routes_of_every_api_module():
    paths = api_paths()
    for expected in (
        "/api/auth/login",
        "/api/customers",
        "/api/customers/cust_AAAAAAAAAAAAAAAAAAAA/activity",
        "/api/auto-engagement/config",
        "/api/schema/",
        "/api/docs/",
    ):
        assert expected in paths


@pytest.mark.parametrize("debug", [False, True])
def test_every_api_route_answers_the_same_with_and_without_its_trailing_slash(api, settings, debug):
    settings.DEBUG = debug
    for path in api_paths():
        declared, other = api.get(path), api.get(other_form(path))
        assert declared.status_code != 404 or declared["Content-Type"] == "application/json", path
        assert not 300 <= other.status_code < 400, (path, other.status_code)
        assert (other.status_code, other["Content-Type"]) == (declared.status_code, declared["Content-Type"]), path
        if declared["Content-Type"] == "application/json":
            assert other.json() == declared.json(), path


def test_a_post_to_the_other_form_keeps_its_body():
    BusinessFactory(email="owner@example.com")
    credentials = {"email": "owner@example.com", "password": DEFAULT_PASSWORD}
    response = APIClient().post("/api/auth/login/", credentials, format="json")
    assert response.status_code == 201
    assert set(response.json()) == {"session_token", "business_id", "expires_at"}


UNMATCHED = [
    "/api",
    "/api/",
    "/api/nope",
    "/api/nope/",
    "/api/auto-engagement/",
    "/api/auto-engagement/nope",
    "/api/customers/cust_AAAAAAAAAAAAAAAAAAAA/activity/extra",
    "/api/customers//",
    "/api/schema//",
]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options"])
def test_an_unmatched_api_path_is_a_json_404(settings, debug, method):
    settings.DEBUG = debug
    for path in UNMATCHED:
        response = getattr(APIClient(), method)(path)
        assert response.status_code == 404, (path, response.status_code)
        assert response["Content-Type"] == "application/json", path
        assert response.json() == {"detail": f"No API endpoint at {path}."}


def test_other_paths_keep_django_answers(settings):
    settings.DEBUG = False
    response = APIClient().get("/nope")
    assert response.status_code == 404
    assert "application/json" not in response["Content-Type"]


def test_the_schema_lists_each_path_once():
    paths = set(APIClient().get("/api/schema/", {"format": "json"}).json()["paths"])
    assert paths
    assert not {path for path in paths if other_form(path) in paths}
    assert all(not path.endswith("/") for path in paths)


def test_every_api_get_refuses_an_unknown_query_parameter(api):
    """A misspelt filter must not quietly return everything: every GET route under /api/ that answers 200 answers a
    400 naming the parameter it does not know (the schema and docs excepted)."""
    checked = 0
    for path in api_paths():
        if path.startswith(("/api/schema", "/api/docs")) or api.get(path).status_code != 200:
            continue
        response = api.get(path, {"no_such_filter": "1"})
        assert response.status_code == 400, path
        assert "no_such_filter" in response.json(), path
        checked += 1
    assert checked >= 4
