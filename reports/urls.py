from __future__ import annotations

from django.urls import path, register_converter

from reports import views
from reports.converters import ClinikAPIIdConverter

register_converter(ClinikAPIIdConverter, "apiid")

app_name = "reports"

urlpatterns = [
    path("patients/", views.patient_search, name="patient_search"),
    path("patients/<apiid:patient_id>/", views.patient_detail, name="patient_detail"),
    path("reports/", views.drafts, name="drafts"),
    path("reports/new/", views.report_new, name="new"),
    path("reports/<int:report_id>/", views.report_edit, name="edit"),
    path("reports/<int:report_id>/history/", views.report_history, name="history"),
    path(
        "reports/<int:report_id>/versions/<int:number>/restore/",
        views.report_restore,
        name="restore",
    ),
    path(
        "reports/<int:report_id>/conflicts/<int:number>/",
        views.report_conflict,
        name="conflict",
    ),
    path("reports/<int:report_id>/attachments/", views.attachment_add, name="attachment_add"),
    path(
        "reports/<int:report_id>/attachments/<str:sha256>/",
        views.attachment_download,
        name="attachment",
    ),
    path(
        "reports/<int:report_id>/attachments/<str:sha256>/remove/",
        views.attachment_remove,
        name="attachment_remove",
    ),
    path("reports/<int:report_id>/payload.json", views.report_payload, name="payload"),
]
