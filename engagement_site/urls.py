from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from wallet.throttling import throttled_admin_login

urlpatterns = [
    path("admin/login/", throttled_admin_login),
    path("admin/", admin.site.urls),
    path("api/", include("wallet.urls")),
    path("api/auto-engagement/", include("autoengagement.urls")),
    path("api/", include("webhooks.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("unsubscribe/", include("notifications.urls")),
    # Twilio's delivery receipts (StatusCallback), authenticated by X-Twilio-Signature.
    path("notifications/twilio/", include("notifications.urls_twilio")),
    path("", include("wallet.passkit_urls")),
]

if settings.EMAIL_THROUGH_ANYMAIL:
    # The ESP's tracking webhooks (e.g. /anymail/postmark/tracking/), behind ANYMAIL_WEBHOOK_SECRET's basic auth.
    urlpatterns.insert(-1, path("anymail/", include("anymail.urls")))
