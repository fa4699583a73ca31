from __future__ import annotations

from django.urls import path, register_converter

from reports import release_views, views
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
    path("reports/<int:report_id>/restore/", views.report_restore, name="restore"),
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
    path("reports/signed/", release_views.signed_reports, name="signed"),
    path("review/", release_views.review_queue, name="review_queue"),
    path("review/<int:report_id>/", release_views.report_review, name="review"),
    path("reports/<int:report_id>/sign/", release_views.report_sign, name="sign"),
    path("reports/<int:report_id>/release/", release_views.report_release, name="release"),
    path("reports/<int:report_id>/amend/", release_views.report_amend, name="amend"),
    path("reports/<int:report_id>/complete/", release_views.report_complete, name="complete"),
    path(
        "reports/<int:report_id>/amend/discard/",
        release_views.amendment_discard,
        name="amendment_discard",
    ),
    path("reports/<int:report_id>/cancel/", release_views.report_cancel, name="cancel"),
    path("notifications/", release_views.notifications, name="notifications"),
    path(
        "reports/<int:report_id>/releases/<int:submission_id>/signed-report.pdf",
        release_views.signed_pdf,
        name="signed_pdf",
    ),
]
