from django import forms
from django.contrib import admin, messages

from engagement_site.admin_mixins import ReadOnlyAdminMixin, TimeZoneInput, compact_time, truncate_text, truncated
from wallet import api_keys
from wallet.models import (
    ApiKey,
    AppleDeviceRegistration,
    Business,
    BusinessSession,
    Customer,
    GoogleWalletMessage,
    WalletPass,
)


class BusinessAdminForm(forms.ModelForm):
    new_password = forms.CharField(
        required=False, widget=forms.PasswordInput, help_text="Set a new API login password (leave empty to keep it)."
    )

    class Meta:
        model = Business
        fields = ("name", "email", "timezone")
        widgets = {"timezone": TimeZoneInput}

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("new_password"):
            self.add_error("new_password", "A new business needs a password.")
        return cleaned

    def save(self, commit: bool = True):
        if self.cleaned_data.get("new_password"):
            self.instance.set_password(self.cleaned_data["new_password"])
        return super().save(commit)


@admin.register(Business)
class BusinessAdmin(admin.ModelAdmin):
    form = BusinessAdminForm
    list_display = (
        "business_id",
        truncated("name", chars=40),
        truncated("email", chars=36),
        "timezone",
        "created_at",
    )
    search_fields = ("business_id", "name", "email")
    readonly_fields = ("business_id", "created_at")


@admin.register(BusinessSession)
class BusinessSessionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        truncated("business__name", chars=40, description="business"),
        "created_at",
        "expires_at",
        "revoked",
    )
    list_filter = ("revoked",)
    search_fields = ("business__business_id", "business__name")
    list_select_related = ("business",)
    readonly_fields = ("business", "token_hash", "created_at", "expires_at")
    fields = ("business", "created_at", "expires_at", "revoked")

    def has_add_permission(self, request):
        return False


class WalletPassInline(admin.TabularInline):
    model = WalletPass
    extra = 0
    fields = ("pass_id", "platform", "created_at", "updated_at")
    readonly_fields = ("pass_id", "created_at", "updated_at")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    # Fits 1280 px: long names and addresses are cut (whole in the tooltip); the business and the opt-outs (also
    # filters) are on the change page.
    list_display = (
        "customer_id",
        "full_name",
        truncated("email", chars=30),
        "phone",
        compact_time("last_activity_at", description="last activity"),
    )
    list_filter = ("email_opt_out", "sms_opt_out", "push_opt_out")
    search_fields = ("customer_id", "first_name", "last_name", "email", "phone", "business__business_id")
    list_select_related = ("business",)
    autocomplete_fields = ("business",)
    # Erasure is the API's (DELETE /api/customers/{id}, which empties the personal data too): staff see when.
    readonly_fields = ("customer_id", "erased_at")
    inlines = (WalletPassInline,)
    show_full_result_count = False

    @admin.display(description="name", ordering="last_name")
    def full_name(self, customer: Customer) -> str:
        return truncate_text(f"{customer.first_name} {customer.last_name}".strip(), 24)


@admin.register(WalletPass)
class WalletPassAdmin(admin.ModelAdmin):
    list_display = (
        "pass_id",
        truncated("customer__customer_id", chars=26, description="customer"),
        "platform",
        "updated_at",
    )
    list_filter = ("platform",)
    search_fields = ("pass_id", "customer__customer_id")
    list_select_related = ("customer",)
    raw_id_fields = ("customer",)
    readonly_fields = ("pass_id", "authentication_token_hash", "message_text", "created_at", "updated_at")


@admin.register(AppleDeviceRegistration)
class AppleDeviceRegistrationAdmin(admin.ModelAdmin):
    list_display = ("device_library_identifier", "wallet_pass", "created_at")
    search_fields = ("device_library_identifier", "wallet_pass__pass_id")
    list_select_related = ("wallet_pass",)
    raw_id_fields = ("wallet_pass",)
    readonly_fields = ("created_at",)


@admin.register(GoogleWalletMessage)
class GoogleWalletMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What was added to Google loyalty objects; notifying messages count against Google's daily cap."""

    list_display = ("message_id", "wallet_pass", "notified", "sent_at")
    list_filter = ("notified",)
    search_fields = ("message_id", "wallet_pass__pass_id")
    list_select_related = ("wallet_pass",)
    date_hierarchy = "sent_at"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are added here or through the API (the key shown once, in a message) and revoked, never edited; the
    key itself is never stored, so it is never shown again."""

    list_display = (
        "key_id",
        truncated("business__name", chars=28, description="business"),
        truncated("name", chars=28),
        "prefix",
        compact_time("created_at", description="created"),
        compact_time("last_used_at", description="last used"),
        compact_time("revoked_at", description="revoked"),
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("key_id", "name", "prefix", "business__business_id", "business__name")
    list_select_related = ("business",)
    autocomplete_fields = ("business",)
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("business", "name")
        return ("key_id", "business", "name", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        api_key, key = api_keys.api_key_create(business=obj.business, name=obj.name)
        obj.pk = api_key.pk
        obj.refresh_from_db()
        self.message_user(request, f"The new key (shown this once; store it now): {key}", messages.WARNING)

    @admin.action(description="Revoke the selected keys (they stop working at once)")
    def revoke(self, request, queryset):
        revoked = 0
        for api_key in queryset.filter(revoked_at=None).select_related("business"):
            api_keys.api_key_revoke(business=api_key.business, key_id=api_key.key_id)
            revoked += 1
        self.message_user(request, f"{revoked} key(s) revoked.", messages.SUCCESS)
