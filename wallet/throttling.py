"""Login throttling: a client IP gets LOGIN_THROTTLE_RATE attempts (e.g. "10/min"), then 429 with Retry-After.

The API login and the admin login count separately, each in the default cache, which production shares between
every worker and host (see CACHES in settings), so the limit holds whatever the number of processes.
"""

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class LoginRateThrottle(SimpleRateThrottle):
    scope = "login"

    def get_rate(self) -> str:
        # Read at request time (not frozen at import like DEFAULT_THROTTLE_RATES), so the setting can change.
        return settings.LOGIN_THROTTLE_RATE

    def get_cache_key(self, request: Request, view: object) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AdminLoginRateThrottle(LoginRateThrottle):
    scope = "admin_login"


class DeviceLogRateThrottle(LoginRateThrottle):
    """The PassKit web service's unauthenticated log endpoint, per client address."""

    scope = "passkit_log"

    def get_rate(self) -> str:
        return settings.PASSKIT_LOG_THROTTLE_RATE


def throttled_admin_login(request: HttpRequest, **kwargs: object) -> HttpResponse:
    """Django admin's login view, with the login rate applied to its form posts."""
    if request.method == "POST":
        throttle = AdminLoginRateThrottle()
        if not throttle.allow_request(request, None):
            response = HttpResponse(
                "Too many login attempts; try again later.\n", status=429, content_type="text/plain"
            )
            response["Retry-After"] = str(max(1, int(throttle.wait() or 60)))
            return response
    return admin.site.login(request, **kwargs)
