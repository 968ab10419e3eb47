"""What every app's admin shares: the site's titles, read-only admins, and list columns that fit 1280 px."""

import zoneinfo
from collections.abc import Callable
from functools import cache
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join


class ReadOnlyAdminMixin:
    """For records written only by the system (logs): staff may look, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:  # obj: inlines pass the parent
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def truncate_text(text: str, chars: int) -> str:
    """`text` cut to `chars` characters with an ellipsis, the whole of it in the tooltip (escaped either way)."""
    if len(text) <= chars:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: chars - 1].rstrip())


def truncated(path: str, *, chars: int, description: str = "", ordering: str | None = None) -> Callable[[Model], Any]:
    """A list column showing the value at `path` ("business__name", "email") cut to `chars` characters with an
    ellipsis, the whole value in its tooltip: long names and provider errors keep the list within 1280 px and stay
    readable on hover (and on the change page)."""

    def column(obj: Model) -> Any:
        value: Any = obj
        for attribute in path.split("__"):
            value = getattr(value, attribute, None) if value is not None else None
        return truncate_text("" if value is None else str(value), chars)

    label = description or path.rsplit("__", 1)[-1].replace("_", " ")
    return admin.display(description=label, ordering=ordering or path)(column)


def compact_time(path: str, *, description: str = "") -> Callable[[Model], str]:
    """A list column showing the date-time at `path` as "2026-11-30 09:05" (the current time zone), a third of the
    width of Django's "Nov. 30, 2026, 9:05 a.m."."""

    def column(obj: Model) -> str:
        value = getattr(obj, path)
        return "-" if value is None else timezone.localtime(value).strftime("%Y-%m-%d %H:%M")

    return admin.display(description=description or path.replace("_", " "), ordering=path)(column)


class TimeZoneInput(forms.TextInput):
    """A time-zone box that suggests every IANA zone as staff type ("paris" offers Europe/Paris): a text input with
    a <datalist>, so nothing is loaded from anywhere and any zone the validation accepts can be typed."""

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> str:
        list_id = f"{(attrs or {}).get('id') or name}-zones"
        attrs = {"class": "vTextField", **(attrs or {}), "list": list_id, "autocomplete": "off"}
        options = format_html_join("", '<option value="{}">', ((zone,) for zone in _time_zones()))
        datalist = format_html('<datalist id="{}">{}</datalist>', list_id, options)
        return format_html("{}{}", super().render(name, value, attrs, renderer), datalist)


@cache
def _time_zones() -> list[str]:
    return sorted(zone for zone in zoneinfo.available_timezones() if "/" in zone or zone == "UTC")


admin.site.site_header = "Auto-engagement administration"
admin.site.site_title = "Auto-engagement"
# The project serves an API, not a site: no "View site" link (it led to a 404).
admin.site.site_url = None
# The app list stays on the index page and in the breadcrumbs; without the sidebar, lists get its 300 px.
admin.site.enable_nav_sidebar = False
