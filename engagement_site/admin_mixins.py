from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """For records written only by the system (logs): staff may look, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:  # obj: inlines pass the parent
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


admin.site.site_header = "Auto-engagement administration"
admin.site.site_title = "Auto-engagement"
