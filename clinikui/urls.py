"""URL wiring: accounts, the admin and the reports app."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from reports import views as report_views

urlpatterns = [
    path("", report_views.home, name="home"),
    path("ping/", report_views.ping, name="ping"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("terminology/", include("terminology.urls")),
    path("", include("reports.urls")),
]
