"""Login throttling: a client IP gets LOGIN_THROTTLE_RATE attempts (e.g. "10/min"), then 429 with Retry-After."""

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class LoginRateThrottle(SimpleRateThrottle):
    scope = "login"

    def get_rate(self) -> str:
        # Read at request time (not frozen at import like DEFAULT_THROTTLE_RATES), so the setting can change.
        return settings.LOGIN_THROTTLE_RATE

    def get_cache_key(self, request: Request, view: object) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
