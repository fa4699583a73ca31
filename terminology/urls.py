from __future__ import annotations

from django.urls import path

from terminology import views

app_name = "terminology"

urlpatterns = [
    path("", views.lookup, name="lookup"),
    path("search", views.search_json, name="search"),
    path("suggestions", views.suggestions, name="suggestions"),
    path("about/", views.about, name="about"),
]
