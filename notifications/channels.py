from django.db import models


class Channel(models.TextChoices):
    WALLET = "wallet", "Wallet pass"
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PUSH = "push", "Push"
