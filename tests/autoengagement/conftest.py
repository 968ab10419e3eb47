from tests.api import _clear_cache, api, business, other_api, other_business  # noqa: F401
