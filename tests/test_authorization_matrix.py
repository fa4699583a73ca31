"""Every URL × method × role gets exactly the status it should (RELIABILITY AC-01..04).

The table below is the product's access policy in one place. Each request runs inside a
savepoint that is rolled back, so a POST that acts (a restore, a discard) cannot change what
the next request sees, and runs with an empty body: an allowed POST then answers with its
form's errors (200/422) or its redirect, and never signs or sends anything.

Roles: anonymous; the report's author (a clinician); another clinician; a supervisor; a
supervisor who wrote the report (Clinician and Supervisor roles: the reports are their own);
an administrator (a superuser: roles, not superuser status, grant clinical work, so no clinical
page is theirs — DESIGN "Roles"); and a deactivated clinician who was the author
and is still holding a session cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from reports import outbox, services
from reports.models import Report, ReportState, Submission
from reports.roles import SUPERVISOR
from reports.sandbox.seed import FIXED_PATIENT_ID
from tests.conftest import make_user
from tests.pdfs import samples
from tests.releasing import complete_content, draft, sign

pytestmark = pytest.mark.django_db

ROLES = (
    "anonymous",
    "author",
    "other_clinician",
    "supervisor",
    "supervisor_author",
    "admin",
    "deactivated",
)
SIGNED_IN = ROLES[1:6]
# Pages without patient data, which may be cached.
PUBLIC_PAGES = {
    "ping",
    "login",
    "terminology:about",
    "terminology:lookup",
    "terminology:search",
    "terminology:suggestions",
}


@dataclass(frozen=True)
class Objects:
    """One author's reports in each state, and what their URLs need."""

    draft: Report
    awaiting: Report
    released: Report
    submission: Submission
    sha256: str
    conflict: int


def _reports_of(author: User) -> Objects:
    report = draft(author, complete_content(status="preliminary"))
    version = services.attach_pdf(
        report_id=report.pk,
        author=author,
        filename="cbc.pdf",
        data=samples.save(samples.document()),
    )
    # An edit based on a stale version is kept as a conflict copy (its page is in the matrix).
    with pytest.raises(services.DraftConflict) as conflict:
        services.save_draft(
            report_id=report.pk,
            author=author,
            base_version=1,
            content=complete_content(conclusion="Typed in another tab."),
        )
    awaiting = draft(author, complete_content(status="final"))
    sign(awaiting, author)
    released = draft(author, complete_content(status="preliminary"))
    sign(released, author)
    outbox.Worker().run_until_idle()
    released.refresh_from_db()
    assert released.state == ReportState.RELEASED
    report.refresh_from_db()
    return Objects(
        draft=report,
        awaiting=awaiting,
        released=released,
        submission=Submission.objects.get(report=released),
        sha256=version.content["attachments"][0]["sha256"],
        conflict=conflict.value.kept.number,
    )


# URL name → (how to build it from Objects, {method: {role: status}}).
# `ALL` fills every signed-in role; anonymous and deactivated users are sent to sign in (302)
# unless the URL says otherwise.
Expect = dict[str, dict[str, int]]


def every(status: int, **overrides: int) -> dict[str, int]:
    return {**dict.fromkeys(SIGNED_IN, status), **overrides}


def composer(own: int, other: int = 403, supervisor: int = 403) -> dict[str, int]:
    """A page of the author's own draft: clinicians who are not the author get 404 (the report's
    existence is not confirmed); roles without the compose permission get 403."""
    return {
        "author": own,
        "supervisor_author": own,
        "other_clinician": other,
        "supervisor": supervisor,
        "admin": 403,
    }


URLS: dict[str, tuple[Callable[[Objects], str], Expect]] = {
    "home": (lambda o: reverse("home"), {"GET": every(302, admin=200), "POST": every(405)}),
    "ping": (
        lambda o: reverse("ping"),
        {
            "GET": every(200, anonymous=200, deactivated=200),
            "POST": every(405, anonymous=405, deactivated=405),
        },
    ),
    "login": (
        lambda o: reverse("login"),
        {
            "GET": every(302, anonymous=200, deactivated=200),
            "POST": every(302, anonymous=200, deactivated=200),
        },
    ),
    "logout": (lambda o: reverse("logout"), {"GET": every(405), "POST": every(302)}),
    "admin": (lambda o: reverse("admin:index"), {"GET": every(302, admin=200)}),
    "terminology:lookup": (
        lambda o: reverse("terminology:lookup"),
        {"GET": every(200), "POST": every(405)},
    ),
    "terminology:search": (
        lambda o: reverse("terminology:search") + "?system=loinc&q=hemo",
        {"GET": every(200), "POST": every(405)},
    ),
    "terminology:about": (
        lambda o: reverse("terminology:about"),
        {
            "GET": every(200, anonymous=200, deactivated=200),
            "POST": every(405, anonymous=405, deactivated=405),
        },
    ),
    "patient_search": (
        lambda o: reverse("reports:patient_search"),
        {"GET": every(200, admin=403), "POST": every(200, admin=403)},
    ),
    "patient_detail": (
        lambda o: reverse("reports:patient_detail", args=[FIXED_PATIENT_ID]),
        {"GET": every(200, admin=403), "POST": every(405)},
    ),
    "drafts": (
        lambda o: reverse("reports:drafts"),
        {"GET": every(200, supervisor=403, admin=403), "POST": every(405)},
    ),
    "new": (
        lambda o: reverse("reports:new"),
        {
            "GET": every(200, supervisor=403, admin=403),
            "POST": every(200, supervisor=403, admin=403),
        },
    ),
    "edit": (
        lambda o: reverse("reports:edit", args=[o.draft.pk]),
        {"GET": composer(200, 404), "POST": composer(200, 404)},
    ),
    "history": (
        lambda o: reverse("reports:history", args=[o.draft.pk]),
        {"GET": composer(200, 404), "POST": every(405)},
    ),
    "restore": (
        lambda o: reverse("reports:restore", args=[o.draft.pk]),
        {"GET": every(405), "POST": composer(302, 404)},
    ),
    "attachment_add": (
        lambda o: reverse("reports:attachment_add", args=[o.draft.pk]),
        {"GET": every(405), "POST": composer(302, 404)},
    ),
    "attachment": (
        lambda o: reverse("reports:attachment", args=[o.draft.pk, o.sha256]),
        {"GET": composer(200, 404), "POST": every(405)},
    ),
    "attachment_remove": (
        lambda o: reverse("reports:attachment_remove", args=[o.draft.pk, o.sha256]),
        {"GET": every(405), "POST": composer(302, 404)},
    ),
    "payload": (
        lambda o: reverse("reports:payload", args=[o.draft.pk]),
        {"GET": composer(200, 404), "POST": every(405)},
    ),
    "sign": (
        lambda o: reverse("reports:sign", args=[o.draft.pk]),
        {"GET": composer(200, 404), "POST": composer(422, 404)},
    ),
    "signed": (
        lambda o: reverse("reports:signed"),
        {"GET": every(200, supervisor=403, admin=403), "POST": every(405)},
    ),
    "review_queue": (
        lambda o: reverse("reports:review_queue"),
        {
            "GET": every(200, author=403, other_clinician=403, admin=403),
            "POST": every(422, author=403, other_clinician=403, admin=403),
        },
    ),
    "review": (
        lambda o: reverse("reports:review", args=[o.awaiting.pk]),
        {
            "GET": every(200, author=403, other_clinician=403, admin=403),
            "POST": every(422, author=403, other_clinician=403, admin=403),
        },
    ),
    "release": (
        lambda o: reverse("reports:release", args=[o.released.pk]),
        {"GET": every(200, other_clinician=404, admin=404), "POST": every(405)},
    ),
    "signed_pdf": (
        lambda o: reverse("reports:signed_pdf", args=[o.released.pk, o.submission.pk]),
        {"GET": every(200, other_clinician=404, admin=404), "POST": every(405)},
    ),
    "amend": (
        lambda o: reverse("reports:amend", args=[o.released.pk]),
        {"GET": composer(200, 404), "POST": composer(422, 404)},
    ),
    # The matrix's released report went out as preliminary, so its author may complete it.
    "complete": (
        lambda o: reverse("reports:complete", args=[o.released.pk]),
        {"GET": composer(200, 404), "POST": composer(422, 404)},
    ),
    "amendment_discard": (
        lambda o: reverse("reports:amendment_discard", args=[o.released.pk]),
        {"GET": every(405), "POST": every(303, other_clinician=404, admin=404)},
    ),
    "cancel": (
        lambda o: reverse("reports:cancel", args=[o.released.pk]),
        {
            "GET": every(200, other_clinician=404, admin=404),
            "POST": every(422, other_clinician=404, admin=404),
        },
    ),
    "conflict": (
        lambda o: reverse("reports:conflict", args=[o.draft.pk, o.conflict]),
        {"GET": composer(200, 404), "POST": every(405)},
    ),
    "terminology:suggestions": (
        lambda o: reverse("terminology:suggestions") + "?system=snomed&q=anae",
        {"GET": every(200), "POST": every(405)},
    ),
    "notifications": (
        lambda o: reverse("reports:notifications"),
        {"GET": every(200), "POST": every(303)},
    ),
}


@pytest.fixture
def people() -> dict[str, User | None]:
    dual = make_user("dual", "Clinician")
    dual.groups.add(Group.objects.get(name=SUPERVISOR))
    return {
        "anonymous": None,
        "author": make_user("author", "Clinician"),
        "other_clinician": make_user("other", "Clinician"),
        "supervisor": make_user("supervisor", SUPERVISOR),
        "supervisor_author": dual,
        "admin": make_user("admin", is_staff=True, is_superuser=True),
        "deactivated": make_user("gone", "Clinician"),
    }


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# What a POST must carry to reach the permission check's far side (an empty body is enough for
# the rest): the restore form names its version in the body.
BODIES = {"restore": b"number=1"}


def test_every_url_method_and_role_gets_exactly_the_expected_status(people, settings):
    settings.CLINIKUI_REVIEW_REQUIRED = True
    by_author = {
        name: _reports_of(people[author])
        for name, author in (
            ("author", "author"),
            ("dual", "supervisor_author"),
            ("gone", "deactivated"),
        )
    }
    deactivated = people["deactivated"]
    assert deactivated is not None
    deactivated.is_active = False
    deactivated.save(update_fields=["is_active"])

    mismatches: list[str] = []
    # Pages showing patient data (every signed-in page but these) must not be stored by the
    # browser or a proxy (RELIABILITY WEB-: Cache-Control: no-store).
    cacheable: list[str] = []
    checked = 0
    for name, (build, methods) in URLS.items():
        for method, expected_by_role in methods.items():
            for role in ROLES:
                objects = by_author[
                    {"supervisor_author": "dual", "deactivated": "gone"}.get(role, "author")
                ]
                expected = expected_by_role.get(role, 302)
                # A fresh session each time: a sign-out answered earlier must not carry over.
                status, cache_control = _request(
                    _client(people[role]), method, build(objects), BODIES.get(name, b"")
                )
                checked += 1
                if status == 200 and name not in PUBLIC_PAGES and "no-store" not in cache_control:
                    cacheable.append(f"{method} {name} as {role}: Cache-Control {cache_control!r}")
                if status != expected:
                    mismatches.append(f"{method} {name} as {role}: {status}, expected {expected}")
    print(f"authorization matrix: {checked} checks, {len(mismatches)} mismatches")
    assert mismatches == [], "\n".join(mismatches)
    assert cacheable == []
    assert checked == sum(len(m) for _, m in URLS.values()) * len(ROLES)


def _request(client: Client, method: str, url: str, body: bytes) -> tuple[int, str]:
    """The status and Cache-Control of one request whose every database change is undone."""
    with transaction.atomic():
        response: Any = client.generic(method, url, body, "application/x-www-form-urlencoded")
        transaction.set_rollback(True)
    return int(response.status_code), str(response.headers.get("Cache-Control", ""))


def test_every_url_pattern_has_a_row_in_the_matrix():
    """RELIABILITY AC-01: a new page without an entry in the access policy fails here."""
    names = set()
    for pattern in get_resolver().url_patterns:
        names |= _names(pattern, "")
    covered = {
        name.removeprefix("reports:") if ":" not in name.removeprefix("reports:") else name
        for name in URLS
    }
    missing = sorted(
        name
        for name in names
        if not name.startswith("admin:")
        and name.removeprefix("reports:") not in covered
        and name not in covered
    )
    assert missing == []


def _names(pattern: Any, namespace: str) -> set[str]:
    if isinstance(pattern, URLResolver):
        inner = f"{pattern.namespace}:" if pattern.namespace else namespace
        found: set[str] = set()
        for child in pattern.url_patterns:
            found |= _names(child, inner if pattern.namespace else namespace)
        return found
    return {f"{namespace}{pattern.name}"} if pattern.name else set()
