from __future__ import annotations

from django.urls import path, register_converter

from reports import views
from reports.converters import ClinikAPIIdConverter

register_converter(ClinikAPIIdConverter, "apiid")

app_name = "reports"

urlpatterns = [
    path("patients/", views.patient_search, name="patient_search"),
    path("patients/<apiid:patient_id>/", views.patient_detail, name="patient_detail"),
]
