"""A rule-based property test of the whole report lifecycle (hypothesis).

Random sequences of edit, sign, verify, return, release (the worker), amend, complete as final,
discard, cancel and injected ClinikAPI faults, against the sandbox over a real socket, must keep
four invariants:

1. no illegal state: every report's state is one the lifecycle allows, reached by a legal step,
   and consistent with its rows (a released report has a remote id, a cancelled one stays so);
2. every signature's hash matches the content of the version it signs;
3. at most one remote report per local report (ClinikAPI's own store is read);
4. one audit row per state change: folding each report's audit events through the lifecycle
   gives its current state, with every event a legal change and none repeated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from reports import amendments, clinikapi, outbox, services, signing, workflow
from reports.models import (
    Amendment,
    AuditEvent,
    Report,
    ReportState,
    Signature,
    Submission,
    SubmissionState,
    Transmission,
)
from reports.payload import ReportContent
from reports.roles import SUPERVISOR
from reports.sandbox import Sandbox, SandboxConfig
from reports.sandbox.faults import Fault
from reports.sandbox.server import serve_in_thread
from tests.conftest import PASSWORD, make_user
from tests.releasing import complete_content, draft, remote_reports_of, sign

pytestmark = pytest.mark.django_db(transaction=True)

S = ReportState
# The state changes one step can make, and the audit action that records each.
LEGAL: dict[str, set[str]] = {
    S.DRAFT: {S.AWAITING_REVIEW, S.RELEASING, S.RELEASED},
    S.AWAITING_REVIEW: {S.RELEASING, S.DRAFT},
    S.RELEASING: {S.RELEASED, S.CANCELLED, S.DRAFT},
    S.RELEASED: {S.DRAFT, S.RELEASING},
    S.CANCELLED: set(),
}
STATE_EVENTS = {
    "draft.started": S.DRAFT,
    "report.awaiting_review": S.AWAITING_REVIEW,
    "release.queued": S.RELEASING,
    "report.returned": S.DRAFT,
    "release.returned": S.DRAFT,
    "report.released": S.RELEASED,
    "report.cancelled": S.CANCELLED,
    "cancellation.refused": S.RELEASED,
    "amendment.started": S.DRAFT,
    "amendment.discarded": S.RELEASED,
}
FAULTS = {
    "500 after storing": lambda route: Fault.server_error(500, route=route, when="after"),
    "503 before storing": lambda route: Fault.server_error(503, route=route),
    "connection dropped after storing": lambda route: Fault.drop(route=route),
    "422 refused": lambda route: Fault.error(422, "VALIDATION_ERROR", route=route),
}
_counter = itertools.count()


class Lifecycle(RuleBasedStateMachine):
    author: ClassVar[User]
    supervisor: ClassVar[User]
    sandbox: ClassVar[Any]

    reports = Bundle("reports")

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[int] = []
        self.states: dict[int, str] = {}
        self.worker = outbox.Worker(name=f"machine-{next(_counter)}")

    # --- rules ---------------------------------------------------------------------------------

    @initialize(target=reports)
    def released_report(self) -> int:
        """Each sequence starts with one report already released, so that amending and
        cancelling are reachable from the first step."""
        report = draft(self.author, complete_content(status="preliminary"))
        sign(report, self.author)
        _time_passes()
        self.worker.run_until_idle()
        report.refresh_from_db()
        assert report.state == S.RELEASED
        self.ids.append(report.pk)
        self.states[report.pk] = report.state
        return report.pk

    # A few reports per sequence, so the steps go deep into each one's life.
    @precondition(lambda self: len(self.ids) < 3)
    @rule(target=reports, status=st.sampled_from(["preliminary", "final"]))
    def new_report(self, status: str) -> int:
        report = draft(self.author, complete_content(status=status))
        self.ids.append(report.pk)
        self.states[report.pk] = report.state
        return report.pk

    @rule(report_id=reports, words=st.text(alphabet="abc xyz.", min_size=1, max_size=12))
    def edit(self, report_id: int, words: str) -> None:
        report = Report.objects.get(pk=report_id)
        head = ReportContent.from_json(report.versions.get(number=report.head).content)
        changed = dataclasses.replace(head, conclusion=f"{head.conclusion} {words}".strip())
        try:
            services.save_draft(
                report_id=report_id, author=self.author, base_version=report.head, content=changed
            )
        except services.ReportNotEditable:
            assert report.state != S.DRAFT

    @rule(report_id=reports)
    def sign_as_author(self, report_id: int) -> None:
        report = Report.objects.get(pk=report_id)
        with contextlib.suppress(workflow.SigningRefused):
            sign(report, self.author)

    @rule(report_id=reports)
    def verify(self, report_id: int) -> None:
        report = Report.objects.get(pk=report_id)
        try:
            workflow.verify_report(
                request=RequestFactory().post("/"),
                report_id=report_id,
                verifier=self.supervisor,
                password=PASSWORD,
                version_number=report.head,
                token=uuid.uuid4(),
            )
        except workflow.ReviewRefused:
            assert report.state != S.AWAITING_REVIEW

    @rule(report_id=reports)
    def return_to_author(self, report_id: int) -> None:
        report = Report.objects.get(pk=report_id)
        try:
            workflow.return_report(
                report_id=report_id,
                reviewer=self.supervisor,
                version_number=report.head,
                comment="Please check.",
            )
        except workflow.ReviewRefused:
            assert report.state != S.AWAITING_REVIEW

    @rule()
    def release(self) -> None:
        _time_passes()
        self.worker.run_until_idle()

    @rule(report_id=reports, kind=st.sampled_from(["amended", "corrected", "appended"]))
    def amend(self, report_id: int, kind: str) -> None:
        try:
            amendments.start_amendment(
                report_id=report_id,
                user=self.author,
                kind=kind,
                reason="interpretation",
                explanation="Changed on review.",
            )
        except amendments.AmendmentRefused:
            assert Report.objects.get(pk=report_id).state != S.RELEASED

    @rule(report_id=reports)
    def complete(self, report_id: int) -> None:
        report = Report.objects.get(pk=report_id)
        try:
            amendments.start_completion(
                report_id=report_id, user=self.author, explanation="All results in."
            )
        except amendments.AmendmentRefused:
            # Refused only for what is not an early release ClinikAPI holds.
            assert report.state != S.RELEASED or not amendments.is_early_release(
                amendments.released_submission(report)
            )

    @rule(report_id=reports)
    def discard(self, report_id: int) -> None:
        with contextlib.suppress(amendments.AmendmentRefused):
            amendments.discard_amendment(report_id=report_id, user=self.author)

    @rule(report_id=reports)
    def cancel(self, report_id: int) -> None:
        report = Report.objects.get(pk=report_id)
        try:
            amendments.cancel_report(
                request=RequestFactory().post("/"),
                report_id=report_id,
                user=self.author,
                password=PASSWORD,
                reason="other",
                explanation="Sent in error.",
                token=uuid.uuid4(),
                version_number=report.head,
            )
        except amendments.AmendmentRefused:
            assert report.state != S.RELEASED

    @rule(
        fault=st.sampled_from(sorted(FAULTS)),
        route=st.sampled_from(["POST /v1/labs", "PATCH /v1/labs/*"]),
    )
    def inject_fault(self, fault: str, route: str) -> None:
        self.sandbox.faults.push(FAULTS[fault](route))

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def every_state_is_legal_and_reached_legally(self) -> None:
        for report in Report.objects.filter(pk__in=self.ids):
            before = self.states[report.pk]
            assert report.state in LEGAL
            assert report.state == before or report.state in LEGAL[before], (before, report.state)
            self.states[report.pk] = report.state
            if report.state in (S.RELEASED, S.CANCELLED):
                assert report.remote_id
            waiting = Submission.objects.filter(report=report).waiting().count()
            assert waiting <= 1
            if report.state == S.RELEASING:
                parked = Submission.objects.filter(report=report, state=SubmissionState.PARKED)
                assert waiting == 1 or parked.exists()
            else:
                assert waiting == 0

    @invariant()
    def every_signature_matches_its_version(self) -> None:
        for signature in Signature.objects.filter(report__in=self.ids).select_related(
            "version", "report"
        ):
            check = signing.verify_signature(
                signature, file_bytes=services.attachment_bytes(signature.report)
            )
            assert check.ok, check.reason

    @invariant()
    def at_most_one_remote_report_per_local_report(self) -> None:
        for report in Report.objects.filter(pk__in=self.ids):
            remote = remote_reports_of(self.sandbox, report)
            assert len(remote) <= 1, [lab["id"] for lab in remote]
            if remote and report.remote_id:
                assert remote[0]["id"] == report.remote_id

    @invariant()
    def one_audit_row_per_state_change(self) -> None:
        for report in Report.objects.filter(pk__in=self.ids):
            actions = AuditEvent.objects.filter(report=report).values_list("action", flat=True)
            folded: str | None = None
            for action in actions.order_by("seq"):
                target = STATE_EVENTS.get(action)
                if target is None:
                    continue
                assert folded is None or target in LEGAL[folded], (folded, action)
                folded = target
            assert folded == report.state

    def teardown(self) -> None:
        """Let every release finish, then check the invariants once more."""
        self.sandbox.faults.clear()
        deadline = time.monotonic() + 20
        while Submission.objects.filter(report__in=self.ids).waiting().exists():
            assert time.monotonic() < deadline, "releases did not settle"
            _time_passes()
            if not self.worker.step():
                time.sleep(0.02)
        self.every_state_is_legal_and_reached_legally()
        self.at_most_one_remote_report_per_local_report()
        self.one_audit_row_per_state_change()


def _time_passes() -> None:
    """Backoffs, pauses and the breaker's cooldown run out: whatever is waiting is due now
    (the test's stand-in for the minutes a real outage takes)."""
    now = timezone.now()
    Transmission.objects.update(paused_until=None, breaker_open_until=None)
    Submission.objects.waiting().filter(lease_owner="").update(next_attempt_at=now)


@pytest.fixture
def sandbox_for_machine(settings: Any) -> Iterator[Sandbox]:
    """The sandbox over a socket, with a rate limit the hundreds of sequences stay under (the
    limit's own handling is tested in tests/test_release.py and bench/faults.py)."""
    running = serve_in_thread(Sandbox(SandboxConfig(rate_limit_per_minute=100_000)))
    settings.CLINIKAPI_BASE_URL = running.url
    settings.CLINIKAPI_READ_TIMEOUT = 1.0
    settings.CLINIKAPI_TIMEOUT = 3.0
    clinikapi.reset_client()
    yield running.sandbox
    running.stop()
    clinikapi.reset_client()


def test_random_lifecycles_keep_the_invariants(sandbox_for_machine, settings_fixture_for_machine):
    Lifecycle.author = make_user("machine-author", "Clinician")
    Lifecycle.supervisor = make_user("machine-supervisor", SUPERVISOR)
    Lifecycle.sandbox = sandbox_for_machine
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=True,
        ),
    )
    print(
        "lifecycle machine, final states:", Counter(Report.objects.values_list("state", flat=True))
    )
    print(
        "lifecycle machine, events:", Counter(AuditEvent.objects.values_list("action", flat=True))
    )
    # The sequences really went through the lifecycle (not a vacuous pass). Which faults hit
    # which request depends on timing, so only their being hit is required, not each outcome.
    reached = set(Report.objects.values_list("state", flat=True)) | _states_ever()
    assert {S.RELEASED, S.AWAITING_REVIEW, S.CANCELLED} <= reached
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"amendment.started", "report.cancellation_signed"} <= actions
    started = AuditEvent.objects.filter(action="amendment.started")
    kinds = Counter(details["kind"] for details in started.values_list("details", flat=True))
    released = Amendment.objects.filter(released_at__isnull=False).values_list("kind", flat=True)
    print("lifecycle machine, amendments started:", kinds, "released:", Counter(released))
    assert kinds["completion"] > 0
    assert sum(1 for record in sandbox_for_machine.store.requests if record.fault) >= 5


def _states_ever() -> set[str]:
    actions = AuditEvent.objects.values_list("action", flat=True).distinct()
    return {STATE_EVENTS[action] for action in actions if action in STATE_EVENTS}


@pytest.fixture
def settings_fixture_for_machine(settings: Any) -> None:
    settings.CLINIKUI_REVIEW_REQUIRED = True
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = True
    # Reconciliation waits shrunk (the sandbox here has no search lag).
    settings.CLINIKUI_RECONCILE_FIRST_CHECK = 0.05
    settings.CLINIKUI_RECONCILE_SECOND_CHECK = 0.1
    settings.CLINIKUI_BREAKER_COOLDOWN = 0.05
    settings.CLINIKUI_WORKER_LEASE = 5.0
