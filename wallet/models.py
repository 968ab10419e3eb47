from django.contrib.auth.hashers import check_password, make_password
from django.db import models
from django.db.models import Q
from django.utils import timezone

from engagement_site import secure_ids
from engagement_site.db import json_object_check, prefix_check
from engagement_site.secure_ids import IdKind


class Business(models.Model):
    business_id = models.CharField(
        max_length=secure_ids.MAX_LENGTH, unique=True, default=secure_ids.new_business_id, editable=False
    )
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    password = models.CharField(max_length=128)
    timezone = models.CharField(max_length=64, default="UTC")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "businesses"
        constraints = [
            models.CheckConstraint(
                condition=prefix_check("business_id", IdKind.BUSINESS.prefix), name="business_id_prefix"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.business_id})"

    def set_password(self, raw_password: str) -> None:
        self.password = make_password(raw_password)

    def check_password(self, raw_password: str) -> bool:
        return check_password(raw_password, self.password)


class BusinessSession(models.Model):
    """An API session; only the SHA-256 of its token is stored."""

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="sessions")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"session {self.pk} of {self.business_id}"


class ApiKey(models.Model):
    """A business's long-lived credential for server integrations (`Authorization: Bearer <key>`). Only the key's
    SHA-256 is stored; its first characters (`prefix`) help staff and users tell keys apart."""

    key_id = models.CharField(
        max_length=secure_ids.MAX_LENGTH, unique=True, default=secure_ids.new_api_key_id, editable=False
    )
    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="api_key_name_not_empty")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"


class IdempotencyRecord(models.Model):
    """The first answer to a business's POST sent with an `Idempotency-Key`, replayed to retries for 24 hours
    (wallet.idempotency).

    The row is inserted (status_code null: in flight) in its own transaction before the view runs; the unique
    constraint makes a concurrent duplicate fail there instead of writing twice.
    """

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, the path and the raw body: a retry must send the same request.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The first answer's JSON exactly as it was sent (empty for a 204), so a replay is byte for byte the same.
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["business", "key"], name="idempotency_business_key_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.key} of {self.business_id}"


class Customer(models.Model):
    customer_id = models.CharField(
        max_length=secure_ids.MAX_LENGTH, unique=True, default=secure_ids.new_customer_id, editable=False
    )
    # No index of its own: the indexes below all start with business (a fourth would slow every write, and draw
    # plans that scan a whole business, wallet.bulk).
    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="customers", db_index=False)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164, e.g. +14155550100")
    push_token = models.CharField(max_length=4096, blank=True)
    email_opt_out = models.BooleanField(default=False)
    sms_opt_out = models.BooleanField(default=False)
    push_opt_out = models.BooleanField(default=False)
    # A delivery receipt said this number cannot receive SMS (Twilio 30003 / 30005 / 30006): the SMS channel skips
    # the customer while `phone` still equals it, so changing the number (any way) resumes texting.
    sms_undeliverable_phone = models.CharField(max_length=20, blank=True, default="", db_default="")
    sms_undeliverable_reason = models.CharField(max_length=200, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    # What the loyalty platform knows of the customer (points, tier, an offer code...): names to strings or numbers,
    # for templates' {attributes.NAME}. The names and values are checked by wallet.validation.attributes_errors; the
    # database checks that it is an object.
    attributes = models.JSONField(default=dict, blank=True)
    # The loyalty platform's own key for the customer: what bulk imports upsert by. Unique within the business when
    # set; NULL (not "") when unset, so any number of customers may have none.
    external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL: none, many allowed)
    # Set when the customer's personal data was erased (DELETE /api/customers/{id}): the row stays, emptied, so the
    # notification log and the results keep counting it, but the API and the daily run no longer see it.
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=prefix_check("customer_id", IdKind.CUSTOMER.prefix), name="customer_id_prefix"
            ),
            models.CheckConstraint(condition=json_object_check("attributes"), name="customer_attributes_object"),
            # A partial unique index on both SQLite and PostgreSQL.
            models.UniqueConstraint(
                fields=["business", "external_id"],
                condition=Q(external_id__isnull=False),
                name="customer_external_id_unique",
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="customer_external_id_not_empty"),
        ]
        indexes = [
            models.Index(fields=["business", "last_activity_at"], name="customer_business_activity_idx"),
            # The daily run reads a business's customers in primary-key order (keyset pagination).
            models.Index(fields=["business", "id"], name="customer_business_keyset_idx"),
        ]

    def __str__(self) -> str:
        return self.customer_id


class WalletPass(models.Model):
    """A pass on a customer's phone. Apple's serialNumber is the pass_id; Google's object id is `<issuer>.<pass_id>`."""

    class Platform(models.TextChoices):
        APPLE = "apple", "Apple Wallet"
        GOOGLE = "google", "Google Wallet"

    pass_id = models.CharField(
        max_length=secure_ids.MAX_LENGTH, unique=True, default=secure_ids.new_pass_id, editable=False
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="wallet_passes")
    platform = models.CharField(max_length=10, choices=Platform.choices)
    authentication_token_hash = models.CharField(max_length=64, blank=True)
    # The value of the Apple pass's `message` field (the one with a changeMessage): the latest re-engagement text.
    message_text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The pass's modification time: Last-Modified of the Apple pass and the PassKit "updated since" tag.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "wallet passes"
        indexes = [models.Index(fields=["updated_at"], name="wallet_pass_updated_idx")]
        constraints = [
            models.CheckConstraint(condition=prefix_check("pass_id", IdKind.PASS.prefix), name="pass_id_prefix"),
            models.CheckConstraint(condition=Q(platform__in=["apple", "google"]), name="wallet_pass_platform_valid"),
        ]

    def __str__(self) -> str:
        return self.pass_id

    @property
    def serial_number(self) -> str:
        return self.pass_id


class AppleDeviceRegistration(models.Model):
    """A device that registered for updates of an Apple pass through the PassKit web service."""

    wallet_pass = models.ForeignKey(WalletPass, on_delete=models.CASCADE, related_name="device_registrations")
    device_library_identifier = models.CharField(max_length=128)
    push_token = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device_library_identifier", "wallet_pass"], name="apple_registration_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.device_library_identifier} -> {self.wallet_pass_id}"


class GoogleWalletMessage(models.Model):
    """A message added to a Google loyalty object; notifying ones count against Google's 3 per pass per 24 hours."""

    wallet_pass = models.ForeignKey(WalletPass, on_delete=models.CASCADE, related_name="google_messages")
    message_id = models.CharField(max_length=100)
    notified = models.BooleanField()
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["wallet_pass", "sent_at"], name="google_message_pass_sent_idx")]

    def __str__(self) -> str:
        return f"{self.message_id} on {self.wallet_pass_id}"
