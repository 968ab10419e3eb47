"""Twilio's StatusCallback, mounted at /notifications/twilio/ (engagement_site.urls)."""

from django.urls import path

from notifications import views

urlpatterns = [
    path("status/", views.twilio_status, name="twilio-status"),
]
