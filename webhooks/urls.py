"""Mounted at /api/: the webhook endpoints."""

from rest_framework.routers import SimpleRouter

from webhooks import api

app_name = "webhooks"

router = SimpleRouter(trailing_slash=False)
router.register("webhooks", api.WebhookViewSet, basename="webhook")

urlpatterns = router.urls
