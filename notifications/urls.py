from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("<str:token>/", views.unsubscribe, name="unsubscribe"),
    # A mail client's one-click POST may drop the trailing slash: answered as is, never redirected (RFC 8058).
    path("<str:token>", views.unsubscribe, name="unsubscribe-no-slash"),
]
