"""The API's paths, for every route under /api/ wherever it is mounted: each answers with and without its trailing
slash, and a path that matches no route is DRF's JSON 404, never Django's HTML page (DEBUG or not).

Both slash forms reach the same view without a redirect: a client that follows a redirect of a POST sends a GET,
without the body. The URL patterns keep one form each, so the OpenAPI schema lists each path once.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from rest_framework.exceptions import NotFound
from rest_framework.views import APIView

API_PREFIX = "/api/"


def api_route(path: str, urlconf: str | None = None) -> str | None:
    """`path`, or `path` with its trailing slash removed or added, whichever a URL pattern matches; None if neither
    (a doubled slash is not one of the forms)."""
    other = path.removesuffix("/") if path.endswith("/") else path + "/"
    for candidate in (path,) if path.endswith("//") else (path, other):
        try:
            resolve(candidate, urlconf)
        except Resolver404:
            continue
        return candidate
    return None


class ApiNotFoundView(APIView):
    """The answer to a path under /api/ that no route matches: the exception handler's JSON 404."""

    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()

    def initial(self, request, *args, **kwargs):
        raise NotFound(f"No API endpoint at {request.path}.")


_not_found = ApiNotFoundView.as_view()


class ApiPathMiddleware:
    """Resolves an /api/ path in either slash form (the request's `path` stays what the client sent), or answers
    the JSON 404."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path == API_PREFIX.rstrip("/") or path.startswith(API_PREFIX):
            route = api_route(path, getattr(request, "urlconf", None))
            if route is None:
                # Rendered here: Django renders a view's response only on its way out of URL resolution.
                return _not_found(request).render()
            request.path_info = route
        return self.get_response(request)
