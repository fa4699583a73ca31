"""F11 — every URL that accepts POST refuses one without a valid CSRF token.

Run by bench/security.py (`python bench/security_csrf.py` prints one JSON line). Over a throwaway
SQLite database holding one report in each state (as tests/test_authorization_matrix.py builds
them), every URL pattern of Django's resolver (the admin's included) is given concrete
arguments. A URL "accepts POST" when some user — the report's author, a supervisor, a user with
both roles, an administrator, or nobody signed in — gets anything but 401/403/404/405 or the
sign-in page for a POST carrying a valid token. Each such URL is then posted to as that user,
with `Client(enforce_csrf_checks=True)`, three ways: no token at all; the token of another
browser (a cookie that does not match the form's token); a valid token with a foreign `Origin`
(127.0.0.2 is another site to 127.0.0.1). Each must answer 403 through Django's CSRF check
(counted from the `django.security.csrf` log), and the database must not change.
Every request runs in a transaction that is rolled back, so no POST can affect the next.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = "csrf-bench-password-4h2j"
FOREIGN_ORIGIN = "http://127.0.0.2:8000"


def setup_django(scratch: Path) -> None:
    os.environ.update(
        {
            "CLINIKUI_ENVIRONMENT": "test",
            "CLINIKAPI_BASE_URL": "sandbox",
            "DATABASE_URL": f"sqlite:///{scratch / 'csrf.sqlite3'}",
            "DJANGO_SETTINGS_MODULE": "clinikui.settings",
            "LOG_LEVEL": "CRITICAL",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
    call_command("migrate", verbosity=0, interactive=False)


class CsrfLog(logging.Handler):
    """Counts Django's CSRF refusals ("Forbidden (CSRF token missing.): /path")."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@dataclass(frozen=True)
class Endpoint:
    route: str
    name: str
    path: str


def walk(resolver: Any, prefix: str = "", namespace: str = "") -> list[tuple[str, str, Any]]:
    from django.urls import URLResolver

    found = []
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            found += walk(pattern, prefix + str(pattern.pattern), inner)
        else:
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            found.append((prefix + str(pattern.pattern), name or "", pattern))
    return found


def build_objects() -> dict[str, Any]:
    """Users and one report in each state, like the authorization matrix's fixtures."""
    from django.contrib.auth.models import Group, User
    from django.test import RequestFactory

    from reports import alerts, outbox, services, workflow
    from reports.models import Report, ReportState, Submission
    from reports.payload import LOINC, SNOMED_CT, CodedConcept, ReportContent
    from reports.roles import CLINICIAN, SUPERVISOR, ensure_roles
    from reports.sandbox import default_sandbox
    from reports.sandbox.seed import FIXED_PATIENT_ID, seed_data
    from tests.pdfs import samples

    ensure_roles()
    default_sandbox().configure(rate_limit_per_minute=1_000_000)

    def user(name: str, *roles: str, **extra: Any) -> User:
        made = User.objects.create_user(name, password=PASSWORD, **extra)
        for role in roles:
            made.groups.add(Group.objects.get(name=role))
        return made

    author = user("author", CLINICIAN)
    people: dict[str, User | None] = {
        "author": author,
        "supervisor": user("supervisor", SUPERVISOR),
        "dual": user("dual", CLINICIAN, SUPERVISOR),
        "admin": user("admin", is_staff=True, is_superuser=True),
        "anonymous": None,
    }
    results = tuple(
        sorted(o["id"] for o in seed_data()["observations"] if o["patientId"] == FIXED_PATIENT_ID)[
            :3
        ]
    )

    def content(status: str) -> ReportContent:
        return ReportContent(
            patient_id=FIXED_PATIENT_ID,
            code=CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
            category="LAB",
            status=status,
            effective=datetime(2026, 11, 20, 7, 40, tzinfo=UTC),
            result_ids=results,
            conclusion="Mild normocytic anaemia.",
            conclusion_codes=(CodedConcept(SNOMED_CT, "271737000", "Anemia"),),
        )

    def draft(status: str) -> Report:
        report = services.start_report(author=author, patient_id=FIXED_PATIENT_ID)
        services.save_draft(
            report_id=report.pk, author=author, base_version=1, content=content(status)
        )
        report.refresh_from_db()
        return report

    def sign(report: Report) -> None:
        report.refresh_from_db()
        workflow.sign_report(
            request=RequestFactory().post("/"),
            report_id=report.pk,
            signer=author,
            password=PASSWORD,
            version_number=report.head,
            token=uuid.uuid4(),
        )

    the_draft = draft("preliminary")
    version = services.attach_pdf(
        report_id=the_draft.pk,
        author=author,
        filename="cbc.pdf",
        data=samples.save(samples.document()),
    )
    sha256 = version.content["attachments"][0]["sha256"]
    try:
        services.save_draft(
            report_id=the_draft.pk,
            author=author,
            base_version=1,
            content=content("final"),
        )
        raise RuntimeError("expected a conflict copy")
    except services.DraftConflict as conflict:
        conflict_number = conflict.kept.number
    awaiting = draft("final")
    sign(awaiting)
    released = draft("preliminary")
    sign(released)
    outbox.Worker().run_until_idle()
    released.refresh_from_db()
    if released.state != ReportState.RELEASED:
        raise RuntimeError(f"the released report is {released.state}")
    alerts.raise_alert("bench", "An alert for the admin's resolve action.")
    return {
        "people": people,
        "draft": the_draft,
        "awaiting": awaiting,
        "released": released,
        "submission": Submission.objects.get(report=released),
        "sha256": sha256,
        "conflict": conflict_number,
    }


def admin_object_ids() -> dict[str, str]:
    """`app_label/model_name` → the pk of one row, for the admin's object URLs."""
    from django.contrib import admin
    from django.utils import timezone

    ids = {}
    for model in admin.site._registry:
        label = f"{model._meta.app_label}/{model._meta.model_name}"
        row = model._default_manager.order_by("pk").first()
        if row is None and model._meta.app_label == "axes":
            fields = {
                "user_agent": "bench",
                "ip_address": "127.0.0.1",
                "username": "nobody",
                "http_accept": "*/*",
                "path_info": "/accounts/login/",
                "attempt_time": timezone.now(),
            }
            extras: dict[str, dict[str, Any]] = {
                "accessattempt": {"get_data": "", "post_data": "", "failures_since_start": 1},
                "accessfailurelog": {"locked_out": False},
                "accesslog": {},
            }
            extra = extras[str(model._meta.model_name)]
            row = model._default_manager.create(**fields, **extra)
        ids[label] = str(row.pk) if row is not None else "1"
    return ids


REPORT_FOR = {
    "reports:edit": "draft",
    "reports:history": "draft",
    "reports:restore": "draft",
    "reports:conflict": "draft",
    "reports:attachment_add": "draft",
    "reports:attachment": "draft",
    "reports:attachment_remove": "draft",
    "reports:payload": "draft",
    "reports:sign": "draft",
    "reports:review": "awaiting",
    "reports:release": "released",
    "reports:amend": "released",
    "reports:amendment_discard": "released",
    "reports:cancel": "released",
    "reports:signed_pdf": "released",
}


def concrete_path(route: str, name: str, objects: dict[str, Any], admin_ids: dict[str, str]) -> str:
    from django.contrib.contenttypes.models import ContentType

    from reports.models import Report
    from reports.sandbox.seed import FIXED_PATIENT_ID

    path = route
    report = objects[REPORT_FOR.get(name, "draft")]
    number = objects["conflict"] if name == "reports:conflict" else 1
    model = re.match(r"admin/(\w+)/(\w+)/", path)
    values = {
        "report_id": str(report.pk),
        "number": str(number),
        "sha256": objects["sha256"],
        "submission_id": str(objects["submission"].pk),
        "patient_id": FIXED_PATIENT_ID,
        "content_type_id": str(ContentType.objects.get_for_model(Report).pk),
        "id": str(objects["people"]["author"].pk),
        "object_id": admin_ids.get(f"{model[1]}/{model[2]}", "1") if model else "1",
    }
    if "view_on_site" in name:
        values["object_id"] = str(report.pk)
    # The admin's two regular expressions: an app's index and the catch-all.
    path = path.replace("^(?P<app_label>auth|axes|reports)/$", "reports/")
    path = path.replace("(?P<url>.*)$", "no-such-page/")
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m[1]], path)
    return "/" + path


def endpoints(objects: dict[str, Any]) -> list[Endpoint]:
    from django.urls import get_resolver

    admin_ids = admin_object_ids()
    found = []
    for route, name, _pattern in walk(get_resolver()):
        found.append(Endpoint(route, name, concrete_path(route, name, objects, admin_ids)))
    return found


def fingerprint() -> tuple[Any, ...]:
    """Row counts of every table the application, auth, sessions and axes write (the audit
    trail apart: it is counted on its own), and the alerts resolved, notifications read."""
    from django.apps import apps

    from reports.models import AuditEvent, AuditHead

    parts = []
    for model in apps.get_models():
        if model in (AuditEvent, AuditHead) or not model._meta.managed or model._meta.proxy:
            continue
        if model._meta.app_label in ("reports", "auth", "sessions", "axes", "admin"):
            manager = model._default_manager
            parts.append((model._meta.label, manager.count()))
    from reports.models import Alert, Notification

    parts.append(("resolved alerts", Alert.objects.exclude(resolved_at=None).count()))
    parts.append(("read notifications", Notification.objects.exclude(read_at=None).count()))
    return tuple(parts)


def client_for(user: Any, *, enforce: bool) -> Any:
    from django.test import Client

    client = Client(enforce_csrf_checks=enforce)
    if user is not None:
        client.force_login(user)
    return client


def post(
    client: Any, path: str, *, token: str = "", cookie: str = "", origin: str = ""
) -> tuple[Any, bool, int]:
    """One POST inside a transaction that is rolled back: the response, whether anything
    but the audit trail changed, and how many audit rows it wrote."""
    from django.conf import settings
    from django.db import transaction

    from reports.models import AuditEvent

    if cookie:
        client.cookies[settings.CSRF_COOKIE_NAME] = cookie
    data = {"csrfmiddlewaretoken": token} if token else {}
    headers = {"Origin": origin} if origin else {}
    with transaction.atomic():
        before, audit_before = fingerprint(), AuditEvent.objects.count()
        response = client.post(path, data, headers=headers)
        after, audit_after = fingerprint(), AuditEvent.objects.count()
        transaction.set_rollback(True)
    return response, before != after, audit_after - audit_before


def accepts_post(status: int, response: Any) -> bool:
    """The POST reached a view that took it: not refused, and not sent to sign in first (the
    login-required redirects carry `?next=`; signing out redirects to the sign-in page too, but
    without it)."""
    if status in (401, 403, 404, 405):
        return False
    location = response.get("Location", "") if status in (301, 302, 303) else ""
    return "login/?next=" not in location


def main() -> None:
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="clinikui-security-csrf-"))
    try:
        setup_django(scratch)
        from django.middleware.csrf import _get_new_csrf_string

        csrf_log = CsrfLog()
        logging.getLogger("django.security.csrf").addHandler(csrf_log)
        objects = build_objects()
        people = objects["people"]
        found = endpoints(objects)
        rows: list[dict[str, Any]] = []
        not_post: list[str] = []
        nobody: list[str] = []
        for endpoint in found:
            order = ["admin"] if endpoint.path.startswith("/admin/") else []
            order += ["author", "supervisor", "dual", "admin", "anonymous"]
            chosen = None
            statuses = {}
            for role in dict.fromkeys(order):
                secret = _get_new_csrf_string()
                response, _, _ = post(
                    client_for(people[role], enforce=True),
                    endpoint.path,
                    token=secret,
                    cookie=secret,
                )
                statuses[role] = response.status_code
                if accepts_post(response.status_code, response):
                    chosen = (role, response.status_code)
                    break
            label = f"{endpoint.name or endpoint.route} {endpoint.path}"
            if chosen is None:
                signed_in = {s for r, s in statuses.items() if r != "anonymous"}
                if signed_in == {405}:
                    not_post.append(label)
                else:
                    nobody.append(f"{label} {statuses}")
                continue
            role, allowed_status = chosen
            user = people[role]
            outcomes = {}
            for variant in ("no token", "another browser's token", "foreign Origin"):
                logged = csrf_log.count
                client = client_for(user, enforce=True)
                if variant == "no token":
                    response, changed, audited = post(client, endpoint.path)
                elif variant == "another browser's token":
                    response, changed, audited = post(
                        client,
                        endpoint.path,
                        token=_get_new_csrf_string(),
                        cookie=_get_new_csrf_string(),
                    )
                else:
                    secret = _get_new_csrf_string()
                    response, changed, audited = post(
                        client, endpoint.path, token=secret, cookie=secret, origin=FOREIGN_ORIGIN
                    )
                outcomes[variant] = {
                    "status": response.status_code,
                    "csrf": csrf_log.count > logged,
                    "changed": changed,
                    "audited": audited > 0,
                }
            rows.append(
                {
                    "endpoint": endpoint.name or endpoint.route,
                    "path": endpoint.path,
                    "as": role,
                    "with_token": allowed_status,
                    "outcomes": outcomes,
                }
            )
        from tests.test_authorization_matrix import URLS

        matrix_names = {name.split(":")[-1] for name in URLS}
        app_names = sorted(
            {e.name.split(":")[-1] for e in found if e.name and not e.name.startswith("admin")}
            - matrix_names
        )
        result = {
            "patterns": len(found),
            "post_endpoints": rows,
            "get_only": not_post,
            "refused_to_everyone": nobody,
            "missing_from_matrix": app_names,
            "seconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
