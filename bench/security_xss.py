"""F10 — XSS payloads through every field ClinikUI shows, rendered in the system Chromium.

Run by bench/security.py (`python bench/security_xss.py` prints one JSON line). In one process:
a throwaway SQLite database, the in-process ClinikAPI sandbox with payloads planted in its store
(patient names, encounter types, observation displays and units, practitioner names, specimen
types), reports built through the real services (drafts, conflicts, signatures, returns with a
comment, releases by the real worker, amendments, cancellations, attachments), Django's
LiveServerThread serving the app, and Playwright driving Chromium over every page where each
field appears.

On every page: a `dialog` trap and wrapped alert/confirm/prompt (any call = executed), a
`securitypolicyviolation` listener (CSP reports), a scan for markup that came from a payload
(any `on*` attribute, a marker in an attribute name or value, in script or style text, or in a
tag name), every request whose URL carries a marker, and a check that each payload expected in a
region of the page is there as text (whitespace ignored; JSON-escaped where the page shows JSON).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from security_payloads import Payload, batches, build_payloads, joined  # noqa: E402

PASSWORD = "xss-bench-password-9f3k"
SEPARATOR = " ~~ "
CHROMIUM = os.environ.get("CLINIKUI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SETTLE_MS = 80

INIT_SCRIPT = """
(() => {
  window.__xss = [];
  window.__csp = [];
  for (const name of ["alert", "confirm", "prompt"]) {
    const original = window[name];
    window[name] = function (...args) {
      window.__xss.push(name + ":" + String(args[0]));
      try { return original.apply(this, args); } catch (error) { return undefined; }
    };
  }
  document.addEventListener("securitypolicyviolation", (event) => {
    window.__csp.push({
      directive: event.effectiveDirective || event.violatedDirective,
      blocked: event.blockedURI,
      sample: event.sample,
      source: event.sourceFile,
      line: event.lineNumber,
    });
  }, true);
})();
"""

CHECK_SCRIPT = """
({expects}) => {
  const MARK = /xssm\\d{3}/;
  const strip = (text) => text.replace(/\\s+/g, "");
  const markup = [];
  for (const element of document.querySelectorAll("*")) {
    const tag = element.tagName;
    if (MARK.test(tag)) markup.push(["marker in a tag name", tag, "", ""]);
    for (const attribute of element.attributes) {
      const name = attribute.name, value = attribute.value;
      if (/^on/i.test(name)) {
        markup.push(["on* attribute", tag, name, value.slice(0, 160)]);
      } else if (MARK.test(name)) {
        markup.push(["marker in an attribute name", tag, name, value.slice(0, 160)]);
      } else if (MARK.test(value)) {
        // Text the application itself copies into a form control's value is still text.
        const isValue = name === "value" && (tag === "INPUT" || tag === "OPTION");
        if (!isValue && name !== "data-display") {
          markup.push(["marker in an attribute value", tag, name, value.slice(0, 160)]);
        }
      }
    }
    if ((tag === "SCRIPT" || tag === "STYLE") && MARK.test(element.textContent)) {
      markup.push(["marker in script or style text", tag, "", element.textContent.slice(0, 160)]);
    }
  }
  const missing = [];
  for (const expect of expects) {
    const found = document.querySelectorAll(expect.region);
    let text = "";
    for (const element of found) {
      const isControl = element.tagName === "TEXTAREA" || element.tagName === "INPUT";
      text += " " + (isControl ? element.value : element.textContent);
    }
    text = strip(text);
    for (const [number, alternatives] of expect.texts) {
      if (!alternatives.some((candidate) => text.includes(strip(candidate)))) {
        missing.push([expect.key, number, expect.region, found.length]);
      }
    }
  }
  return {markup, missing, xss: window.__xss || [], csp: window.__csp || []};
}
"""


@dataclass
class Expect:
    field: str
    page: str
    region: str
    # (payload number, acceptable texts): the payload as the page should show it.
    texts: list[tuple[int, list[str]]]


@dataclass
class Visit:
    who: str
    path: str
    expects: list[Expect] = field(default_factory=list)
    search: str = ""  # fill the patient search form with this and submit it


def raw(payloads: Iterable[Payload]) -> list[tuple[int, list[str]]]:
    return [(p.number, [p.text]) for p in payloads]


def as_json(payloads: Iterable[Payload]) -> list[tuple[int, list[str]]]:
    return [(p.number, [p.json_form()]) for p in payloads]


def expect(field_name: str, page: str, region: str, texts: list[tuple[int, list[str]]]) -> Expect:
    return Expect(field_name, page, region, texts)


def setup_django(scratch: Path) -> None:
    os.environ.update(
        {
            "CLINIKUI_ENVIRONMENT": "test",
            "CLINIKAPI_BASE_URL": "sandbox",
            "DATABASE_URL": f"sqlite:///{scratch / 'xss.sqlite3'}",
            "DJANGO_SETTINGS_MODULE": "clinikui.settings",
            # Playwright's sync API keeps an event loop in this thread; the ORM calls made from
            # it between page loads are ordinary synchronous ones.
            "DJANGO_ALLOW_ASYNC_UNSAFE": "true",
            "LOG_LEVEL": "ERROR",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # Users are created and sign in here many times: the fast hasher keeps seeding short.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", verbosity=0, interactive=False)


class World:
    """The database and sandbox content the pages are rendered from."""

    def __init__(self, payloads: list[Payload]) -> None:
        from django.contrib.auth.models import Group, User
        from django.test import RequestFactory

        from reports.roles import CLINICIAN, SUPERVISOR, ensure_roles

        ensure_roles()
        self.payloads = payloads
        self.clinician = User.objects.create_user(
            "xss-clinician", password=PASSWORD, first_name="Clara", last_name="Author"
        )
        self.clinician.groups.add(Group.objects.get(name=CLINICIAN))
        self.supervisor = User.objects.create_user(
            "xss-supervisor", password=PASSWORD, first_name="Sam", last_name="Reviewer"
        )
        self.supervisor.groups.add(Group.objects.get(name=SUPERVISOR))
        self.request_factory = RequestFactory()
        self.visits: list[Visit] = []

    # --- the sandbox ---------------------------------------------------------------------------

    def plant_api_data(self, groups: list[list[Payload]]) -> None:
        """One patient per group of payloads (its name), with an encounter, an observation and a
        specimen carrying the same group; one practitioner per group (surname)."""
        from reports.sandbox import default_sandbox

        sandbox = default_sandbox()
        # Hundreds of reports are built in a minute: the plan's per-minute limit (100) would only
        # make the worker wait, which is not what this bench measures.
        sandbox.configure(rate_limit_per_minute=1_000_000)
        store = sandbox.store
        now = "2026-01-05T09:00:00Z"

        def put(kind: str, resource: dict[str, Any]) -> None:
            resource.setdefault("createdAt", now)
            resource.setdefault("updatedAt", now)
            store.insert(
                kind, "test", "org_sandbox", resource, lag=0.0, request_id="seed", timestamp=now
            )

        self.name_patients: list[tuple[str, list[Payload], dict[str, str]]] = []
        for index, group in enumerate(groups):
            text = joined(group, SEPARATOR)
            suffix = f"{index:08d}"
            ids = {
                "patient": f"pt_xss{suffix}",
                "encounter": f"enc_xss{suffix}",
                "observation": f"obs_xss{suffix}",
                "specimen": f"spec_xss{suffix}",
                "practitioner": f"prac_xss{suffix}",
            }
            put(
                "patients",
                {
                    "id": ids["patient"],
                    "fullName": text,
                    "firstName": f"Case{index:03d}",
                    "lastName": f"Xssprobe{'abcdefgh'[index // 40]}",
                    "gender": "female",
                    "birthDate": "1970-01-01",
                    "active": True,
                },
            )
            put(
                "encounters",
                {
                    "id": ids["encounter"],
                    "status": "finished",
                    "class": "AMB",
                    "patientId": ids["patient"],
                    "type": text,
                    "period": {"start": "2026-01-05T09:00:00Z", "end": "2026-01-05T09:30:00Z"},
                    "location": "Clinic 3",
                },
            )
            put(
                "specimens",
                {
                    "id": ids["specimen"],
                    "patientId": ids["patient"],
                    "status": "available",
                    "type": text,
                    "receivedTime": "2026-01-05T09:40:00Z",
                    "collection": {"collectedDateTime": "2026-01-05T09:20:00Z"},
                },
            )
            put(
                "observations",
                {
                    "id": ids["observation"],
                    "status": "final",
                    "code": {"system": "http://loinc.org", "code": "718-7", "display": text},
                    "patientId": ids["patient"],
                    "encounterId": ids["encounter"],
                    "specimenId": ids["specimen"],
                    "category": "laboratory",
                    "effectiveDateTime": "2026-01-05T09:20:00Z",
                    "issued": "2026-01-05T10:00:00Z",
                    "valueQuantity": {"value": 12.5, "unit": text},
                    "interpretation": "N",
                },
            )
            put(
                "practitioners",
                {
                    "id": ids["practitioner"],
                    "firstName": f"Case{index:03d}",
                    "lastName": text,
                    "active": True,
                },
            )
            self.name_patients.append((ids["patient"], group, ids))

    # --- reports ---------------------------------------------------------------------------------

    def content(self, patient_id: str = "", **changes: Any) -> Any:
        from reports.payload import LOINC, SNOMED_CT, CodedConcept, ReportContent
        from reports.sandbox.seed import FIXED_PATIENT_ID, seed_data

        if not hasattr(self, "_fixed_results"):
            self._fixed_results = tuple(
                sorted(
                    o["id"]
                    for o in seed_data()["observations"]
                    if o["patientId"] == FIXED_PATIENT_ID
                )[:2]
            )
        base = ReportContent(
            patient_id=patient_id or FIXED_PATIENT_ID,
            code=CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
            category="LAB",
            status="final",
            effective=datetime(2026, 11, 20, 7, 40, tzinfo=UTC),
            result_ids=() if patient_id else self._fixed_results,
            conclusion="Mild normocytic anaemia.",
            conclusion_codes=(CodedConcept(SNOMED_CT, "271737000", "Anemia"),),
        )
        return replace(base, **changes)

    def draft(self, content: Any) -> Any:
        from reports import services

        report = services.start_report(author=self.clinician, patient_id=content.patient_id)
        services.save_draft(
            report_id=report.pk, author=self.clinician, base_version=1, content=content
        )
        report.refresh_from_db()
        return report

    def save(self, report: Any, content: Any) -> None:
        from reports import services

        report.refresh_from_db()
        services.save_draft(
            report_id=report.pk, author=self.clinician, base_version=report.head, content=content
        )
        report.refresh_from_db()

    def sign(self, report: Any) -> None:
        from reports import workflow

        report.refresh_from_db()
        workflow.sign_report(
            request=self.request_factory.post("/"),
            report_id=report.pk,
            signer=self.clinician,
            password=PASSWORD,
            version_number=report.head,
            token=uuid.uuid4(),
        )
        report.refresh_from_db()

    def give_back(self, report: Any, comment: str) -> None:
        from reports import workflow

        report.refresh_from_db()
        workflow.return_report(
            report_id=report.pk,
            reviewer=self.supervisor,
            version_number=report.head,
            comment=comment,
        )
        report.refresh_from_db()

    def release_all(self) -> None:
        from reports import outbox
        from reports.models import Submission, SubmissionState

        outbox.Worker().run_until_idle()
        waiting = Submission.objects.exclude(state=SubmissionState.SENT)
        if waiting.exists():
            states = list(waiting.values_list("state", "error_code", "error_message"))
            raise RuntimeError(f"the worker left submissions unsent: {states[:5]}")

    def attach(self, report: Any, names: list[tuple[Payload, str]], *, sanitize: bool) -> None:
        """One small PDF per payload, named by it. With `sanitize` the name goes through the
        upload validator's sanitizer (what an upload gets); without, it is stored as given,
        to show the templates escape it on their own."""
        from reports.models import Attachment
        from reports.payload import AttachedFile, ReportContent
        from reports.pdf_validation import validate_pdf_in_process

        report.refresh_from_db()
        content = ReportContent.from_json(report.versions.get(number=report.head).content)
        files = []
        for payload, name in names:
            data = _small_pdf(f"Attachment {payload.number} of report {report.pk}")
            # In process: the sandboxed validator is exercised by the PDF corpus (figure 4).
            checked = validate_pdf_in_process(data, filename=name)
            shown = checked.filename if sanitize else name
            Attachment.objects.create(
                report=report,
                sha256=checked.sha256,
                filename=shown,
                size=checked.size,
                page_count=checked.page_count,
                content=data,
                uploaded_by=self.clinician,
            )
            files.append(AttachedFile(checked.sha256, shown, checked.size))
        self.save(report, replace(content, attachments=tuple(files)))

    # --- the scenario ----------------------------------------------------------------------------

    def build(self) -> None:
        from django.urls import reverse

        from reports import amendments, services
        from reports.pdf_validation import sanitize_filename

        payloads = self.payloads
        conclusions = batches(payloads, max_chars=4800, separator=SEPARATOR)
        texts = batches(payloads, max_chars=1950, separator=SEPARATOR)
        names = batches(payloads, max_chars=295, separator=SEPARATOR)
        self.plant_api_data(names)
        visits = self.visits
        url = reverse

        # Conclusions: draft (composer, history, sign), conflict copy, awaiting review, released.
        released_conclusions = []
        for group in conclusions:
            text = joined(group, SEPARATOR)
            report = self.draft(self.content(conclusion=text))
            visits.append(
                Visit(
                    "clinician",
                    url("reports:edit", args=[report.pk]),
                    [
                        expect("conclusion", "composer", "#id_conclusion", raw(group)),
                        expect("conclusion", "composer", "#preview-json", as_json(group)),
                    ],
                )
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:history", args=[report.pk]),
                    [expect("conclusion", "history diff", "#changes-table", raw(group))],
                )
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:sign", args=[report.pk]),
                    [expect("conclusion", "sign page", "#preview-json", as_json(group))],
                )
            )
            conflicted = self.draft(self.content(conclusion="The text before the conflict."))
            try:
                services.save_draft(
                    report_id=conflicted.pk,
                    author=self.clinician,
                    base_version=1,
                    content=self.content(conclusion=text),
                )
                raise RuntimeError("expected a conflict copy")
            except services.DraftConflict as conflict:
                kept = conflict.kept.number
            visits.append(
                Visit(
                    "clinician",
                    url("reports:conflict", args=[conflicted.pk, kept]),
                    [expect("conclusion", "conflict page", "#conflict-kept", raw(group))],
                )
            )
            awaiting = self.draft(self.content(conclusion=text))
            self.sign(awaiting)
            visits.append(
                Visit(
                    "supervisor",
                    url("reports:review", args=[awaiting.pk]),
                    [
                        expect("conclusion", "review page", "#review-conclusion", raw(group)),
                        expect("conclusion", "review page", "#preview-json", as_json(group)),
                    ],
                )
            )
            released = self.draft(self.content(conclusion=text, status="preliminary"))
            self.sign(released)
            released_conclusions.append((released, group))

        # Return comments: a returned draft (composer, release page) and one signed again
        # (review page, with the earlier review and the timeline).
        for group in texts:
            text = joined(group, SEPARATOR)
            returned = self.draft(self.content())
            self.sign(returned)
            self.give_back(returned, text)
            visits.append(
                Visit(
                    "clinician",
                    url("reports:edit", args=[returned.pk]),
                    [expect("return comment", "composer", "#review-returned", raw(group))],
                )
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:release", args=[returned.pk]),
                    [expect("return comment", "release page", "#timeline", raw(group))],
                )
            )
            again = self.draft(self.content())
            self.sign(again)
            self.give_back(again, text)
            self.save(again, self.content(conclusion="Mild normocytic anaemia, corrected."))
            self.sign(again)
            visits.append(
                Visit(
                    "supervisor",
                    url("reports:review", args=[again.pk]),
                    [
                        expect("return comment", "review page", "#timeline", raw(group)),
                        expect("return comment", "review page", "main", raw(group)),
                    ],
                )
            )

        # Amendments and cancellations start from released reports.
        to_amend: list[tuple[Any, list[Payload]]] = []
        to_amend_and_sign: list[tuple[Any, list[Payload]]] = []
        to_cancel: list[tuple[Any, list[Payload]]] = []
        for group in texts:
            for bucket in (to_amend, to_amend_and_sign, to_cancel):
                report = self.draft(self.content(status="preliminary"))
                self.sign(report)
                bucket.append((report, group))

        # Attachment names: sanitized as an upload is (draft, awaiting review, released) and
        # stored raw (draft, awaiting review).
        sanitized = [(p, p.text + ".pdf") for p in payloads]
        shown = {p.number: sanitize_filename(name) for p, name in sanitized}

        def sanitized_raw(group: Iterable[Payload]) -> list[tuple[int, list[str]]]:
            return [(p.number, [shown[p.number]]) for p in group]

        def sanitized_title(group: Iterable[Payload]) -> list[tuple[int, list[str]]]:
            return [
                (p.number, [json.dumps(shown[p.number].removesuffix(".pdf"), ensure_ascii=False)])
                for p in group
            ]

        def raw_title(group: Iterable[Payload]) -> list[tuple[int, list[str]]]:
            return [(p.number, [p.json_form()]) for p in group]

        files_draft = self.draft(self.content())
        self.attach(files_draft, sanitized, sanitize=True)
        visits.append(
            Visit(
                "clinician",
                url("reports:edit", args=[files_draft.pk]),
                [
                    expect(
                        "attachment filename (upload)",
                        "composer",
                        "#attachments-table",
                        sanitized_raw(payloads),
                    ),
                    expect(
                        "attachment filename (upload)",
                        "composer",
                        "#preview-json",
                        sanitized_title(payloads),
                    ),
                ],
            )
        )
        visits.append(
            Visit(
                "clinician",
                url("reports:sign", args=[files_draft.pk]),
                [
                    expect(
                        "attachment filename (upload)",
                        "sign page",
                        "#preview-json",
                        sanitized_title(payloads),
                    )
                ],
            )
        )
        files_review = self.draft(self.content())
        self.attach(files_review, sanitized, sanitize=True)
        self.sign(files_review)
        visits.append(
            Visit(
                "supervisor",
                url("reports:review", args=[files_review.pk]),
                [
                    expect(
                        "attachment filename (upload)",
                        "review page",
                        "main",
                        sanitized_raw(payloads),
                    ),
                    expect(
                        "attachment filename (upload)",
                        "review page",
                        "#preview-json",
                        sanitized_title(payloads),
                    ),
                ],
            )
        )
        files_released = self.draft(self.content(status="preliminary"))
        self.attach(files_released, sanitized, sanitize=True)
        self.sign(files_released)
        raw_draft = self.draft(self.content())
        self.attach(raw_draft, sanitized, sanitize=False)
        visits.append(
            Visit(
                "clinician",
                url("reports:edit", args=[raw_draft.pk]),
                [
                    expect(
                        "attachment filename (stored raw)",
                        "composer",
                        "#attachments-table",
                        [(p.number, [p.text + ".pdf"]) for p in payloads],
                    ),
                    expect(
                        "attachment filename (stored raw)",
                        "composer",
                        "#preview-json",
                        raw_title(payloads),
                    ),
                ],
            )
        )
        visits.append(
            Visit(
                "clinician",
                url("reports:sign", args=[raw_draft.pk]),
                [
                    expect(
                        "attachment filename (stored raw)",
                        "sign page",
                        "#preview-json",
                        raw_title(payloads),
                    )
                ],
            )
        )
        raw_review = self.draft(self.content())
        self.attach(raw_review, sanitized, sanitize=False)
        self.sign(raw_review)
        visits.append(
            Visit(
                "supervisor",
                url("reports:review", args=[raw_review.pk]),
                [
                    expect(
                        "attachment filename (stored raw)",
                        "review page",
                        "main",
                        [(p.number, [p.text + ".pdf"]) for p in payloads],
                    ),
                    expect(
                        "attachment filename (stored raw)",
                        "review page",
                        "#preview-json",
                        raw_title(payloads),
                    ),
                ],
            )
        )

        # Everything signed for release goes out through the real worker (in-process sandbox).
        self.release_all()
        for report, group in released_conclusions:
            visits.append(
                Visit(
                    "clinician",
                    url("reports:release", args=[report.pk]),
                    [expect("conclusion", "release page", ".released-content", as_json(group))],
                )
            )
        # The release page shows what was signed "without the files": no file names to check.

        for report, group in to_amend:
            amendments.start_amendment(
                report_id=report.pk,
                user=self.clinician,
                kind="amended",
                reason="interpretation",
                explanation=joined(group, SEPARATOR),
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:edit", args=[report.pk]),
                    [expect("amendment explanation", "composer", "#amendment-banner", raw(group))],
                )
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:sign", args=[report.pk]),
                    [expect("amendment explanation", "sign page", "#amendment-reason", raw(group))],
                )
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:release", args=[report.pk]),
                    [
                        expect(
                            "amendment explanation", "release page", "#open-amendment", raw(group)
                        ),
                        expect("amendment explanation", "release page", "#timeline", raw(group)),
                    ],
                )
            )
        for report, group in to_amend_and_sign:
            amendments.start_amendment(
                report_id=report.pk,
                user=self.clinician,
                kind="amended",
                reason="interpretation",
                explanation=joined(group, SEPARATOR),
            )
            self.save(
                report,
                self.content(status="amended", conclusion="Moderate normocytic anaemia."),
            )
            self.sign(report)
            visits.append(
                Visit(
                    "supervisor",
                    url("reports:review", args=[report.pk]),
                    [
                        expect(
                            "amendment explanation",
                            "review page",
                            "#amendment-explanation",
                            raw(group),
                        ),
                        expect("amendment explanation", "review page", "#timeline", raw(group)),
                    ],
                )
            )
        for report, group in to_cancel:
            report.refresh_from_db()
            amendments.cancel_report(
                request=self.request_factory.post("/"),
                report_id=report.pk,
                user=self.clinician,
                password=PASSWORD,
                reason="other",
                explanation=joined(group, SEPARATOR),
                token=uuid.uuid4(),
                version_number=report.head,
            )
        self.release_all()
        for report, group in to_cancel:
            visits.append(
                Visit(
                    "clinician",
                    url("reports:release", args=[report.pk]),
                    [expect("cancellation explanation", "release page", "#timeline", raw(group))],
                )
            )
            visits.append(
                Visit(
                    "supervisor",
                    url("reports:review", args=[report.pk]),
                    [expect("cancellation explanation", "review page", "#timeline", raw(group))],
                )
            )

        # Data read from ClinikAPI: per payload patient, a returned draft (composer, history,
        # sign page, notifications, drafts list) and a report awaiting review (review queue,
        # review page, release page, signed list); the patient search and the chart.
        all_practitioners = raw(payloads)
        for index, (patient_id, group, ids) in enumerate(self.name_patients):
            content = self.content(
                patient_id,
                encounter_id=ids["encounter"],
                result_ids=(ids["observation"],),
                specimen_ids=(ids["specimen"],),
                performer=ids["practitioner"],
                results_interpreter=ids["practitioner"],
            )
            returned = self.draft(content)
            self.sign(returned)
            self.give_back(returned, "Please check the specimen time.")
            composer = [
                expect("patient name", "composer", "title", raw(group)),
                expect("patient name", "composer", "#patient-banner", raw(group)),
                expect("encounter type", "composer", "#id_encounter", raw(group)),
                expect("observation display", "composer", "#results-table", raw(group)),
                expect("observation unit", "composer", "#results-table", raw(group)),
                expect("specimen type", "composer", "#specimens-field", raw(group)),
            ]
            if index == 0:
                composer += [
                    expect("practitioner name", "composer", "#id_performer", all_practitioners),
                    expect(
                        "practitioner name",
                        "composer",
                        "#id_results_interpreter",
                        all_practitioners,
                    ),
                ]
            visits.append(Visit("clinician", url("reports:edit", args=[returned.pk]), composer))
            visits.append(
                Visit(
                    "clinician",
                    url("reports:history", args=[returned.pk]),
                    [expect("patient name", "history", "main", raw(group))],
                )
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:sign", args=[returned.pk]),
                    [expect("patient name", "sign page", "#patient-banner", raw(group))],
                )
            )
            waiting = self.draft(content)
            self.sign(waiting)
            visits.append(
                Visit(
                    "supervisor",
                    url("reports:review", args=[waiting.pk]),
                    [expect("patient name", "review page", "#patient-banner", raw(group))],
                )
            )
            visits.append(
                Visit(
                    "supervisor",
                    url("reports:release", args=[waiting.pk]),
                    [expect("patient name", "release page", "#patient-banner", raw(group))],
                )
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:patient_detail", args=[patient_id]),
                    [
                        expect("patient name", "patient chart", "title", raw(group)),
                        expect("patient name", "patient chart", "#patient-banner", raw(group)),
                        expect("encounter type", "patient chart", "#encounter-table", raw(group)),
                        expect(
                            "observation display", "patient chart", "#observation-table", raw(group)
                        ),
                        expect(
                            "observation unit", "patient chart", "#observation-table", raw(group)
                        ),
                    ],
                )
            )
        every_name = raw(payloads)
        visits.append(
            Visit(
                "clinician",
                url("reports:drafts"),
                [expect("patient name", "drafts list", "#drafts-table", every_name)],
            )
        )
        visits.append(
            Visit(
                "clinician",
                url("reports:signed"),
                [expect("patient name", "signed reports list", "#signed-table", every_name)],
            )
        )
        visits.append(
            Visit(
                "clinician",
                url("reports:notifications"),
                [expect("patient name", "notifications", "#notification-list", every_name)],
            )
        )
        visits.append(
            Visit(
                "supervisor",
                url("reports:review_queue"),
                [expect("patient name", "review queue", "#review-table", every_name)],
            )
        )
        for letter in sorted({"abcdefgh"[i // 40] for i in range(len(self.name_patients))}):
            members = [
                p
                for i, (_, group, _) in enumerate(self.name_patients)
                if "abcdefgh"[i // 40] == letter
                for p in group
            ]
            visits.append(
                Visit(
                    "clinician",
                    url("reports:patient_search"),
                    [expect("patient name", "patient search", "#patient-table", raw(members))],
                    search=f"xssprobe{letter}",
                )
            )
            visits.append(
                Visit(
                    "clinician",
                    url("reports:new"),
                    [expect("patient name", "new report search", "#patient-table", raw(members))],
                    search=f"xssprobe{letter}",
                )
            )


def _small_pdf(title: str) -> bytes:
    # samples.document() shares one font dictionary between documents: the previous document
    # must be gone before the next is made, hence a function of its own.
    from tests.pdfs import samples

    pdf = samples.document()
    pdf.docinfo["/Title"] = title
    data = samples.save(pdf)
    pdf.close()
    return data


@dataclass
class Outcome:
    pages: int = 0
    executed: list[dict[str, str]] = field(default_factory=list)
    markup: list[dict[str, str]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    csp: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tested: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    control: dict[str, Any] = field(default_factory=dict)


def run_browser(base_url: str, visits: list[Visit]) -> Outcome:
    from playwright.sync_api import sync_playwright
    from security_payloads import MARKER

    outcome = Outcome()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        pages = {}
        current = {"path": ""}
        for who, username in (("clinician", "xss-clinician"), ("supervisor", "xss-supervisor")):
            context = browser.new_context()
            context.add_init_script(INIT_SCRIPT)

            def on_request(request: Any, who: str = who) -> None:
                if MARKER.search(request.url):
                    outcome.requests.append(
                        {"page": current["path"], "who": who, "url": request.url[:200]}
                    )

            context.on("request", on_request)
            page = context.new_page()

            def on_dialog(dialog: Any, who: str = who) -> None:
                outcome.executed.append(
                    {
                        "page": current["path"],
                        "how": f"dialog {dialog.type}",
                        "what": dialog.message,
                    }
                )
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.goto(f"{base_url}/accounts/login/")
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state("load")
            if "/accounts/login/" in page.url:
                raise RuntimeError(f"{username} could not sign in")
            pages[who] = page

        for visit in visits:
            page = pages[visit.who]
            current["path"] = visit.path
            try:
                response = page.goto(base_url + visit.path, wait_until="load")
                if response is None or response.status != 200:
                    status = response.status if response else "none"
                    outcome.errors.append(f"{visit.path}: status {status}")
                if visit.search:
                    box = page.get_by_label("Name", exact=True)
                    box.fill(visit.search)
                    box.press("Enter")
                    page.locator("#patient-table").wait_for(timeout=10_000)
                page.wait_for_timeout(SETTLE_MS)
                found = page.evaluate(
                    CHECK_SCRIPT,
                    {
                        "expects": [
                            {"key": [e.field, e.page], "region": e.region, "texts": e.texts}
                            for e in visit.expects
                        ]
                    },
                )
            except Exception as exc:  # a page that breaks is reported, never skipped silently
                outcome.errors.append(f"{visit.path}: {type(exc).__name__}: {exc}"[:300])
                continue
            outcome.pages += 1
            missing_here = {(tuple(m[0]), m[1]) for m in found["missing"]}
            for e in visit.expects:
                for number, _ in e.texts:
                    if ((e.field, e.page), number) not in missing_here:
                        outcome.tested[(e.field, e.page)].add(number)
            for m in found["missing"]:
                outcome.missing.append(
                    {"page": visit.path, "place": m[0], "payload": m[1], "region": m[2], "n": m[3]}
                )
            for kind, tag, name, value in found["markup"]:
                outcome.markup.append(
                    {"page": visit.path, "kind": kind, "tag": tag, "attr": name, "value": value}
                )
            for call in found["xss"]:
                outcome.executed.append({"page": visit.path, "how": "wrapped call", "what": call})
            for report in found["csp"]:
                outcome.csp.append({"page": visit.path, **report})
        outcome.control = detector_control(browser, self_payloads(visits))
        browser.close()
    return outcome


def self_payloads(visits: list[Visit]) -> list[tuple[int, str]]:
    """Every payload once, as the conclusion expectations carry it."""
    seen: dict[int, str] = {}
    for visit in visits:
        for e in visit.expects:
            if e.field == "conclusion" and e.region == "#id_conclusion":
                for number, texts in e.texts:
                    seen[number] = texts[0]
    return sorted(seen.items())


def detector_control(browser: Any, payloads: list[tuple[int, str]]) -> dict[str, Any]:
    """The same traps and checks on a page that puts each payload in unescaped — as element
    content, inside quoted attribute values and inside JavaScript strings — with no CSP and no
    htmx: proof that the checks see a payload that survives. A payload seen in none of these is
    inert even as raw HTML (template syntax no engine on the page evaluates, a log line)."""
    from security_payloads import MARKER

    context = browser.new_context()
    context.add_init_script(INIT_SCRIPT)
    html: dict[str, str] = {}
    requested: set[str] = set()
    dialogs: set[str] = set()

    def fulfil(route: Any) -> None:
        body = html.get(route.request.url)
        if body is None:
            route.abort()
        else:
            route.fulfill(status=200, content_type="text/html", body=body)

    context.route("http://control.test/**", fulfil)

    def on_request(request: Any) -> None:
        found = MARKER.search(request.url)
        if found and not request.url.startswith("http://control.test/"):
            requested.add(found[0])

    context.on("request", on_request)
    page = context.new_page()

    def on_dialog(dialog: Any) -> None:
        dialogs.add(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    detected, inert = 0, []
    for number, text in payloads:
        marker = f"xssm{number:03d}"
        address = f"http://control.test/{number}"
        # The element context last: a payload that turns the rest of the page into text
        # (`<plaintext>`) must not find its own copy in a later context.
        body = (
            f"<input value=\"{text}\"><input value='{text}'>"
            f"<script>var d = \"{text}\"; var s = '{text}';</script><div id=r>{text}</div>"
        )
        html[address] = f"<!doctype html><html><body>{body}</body></html>"
        expects = [{"key": ["control", "raw"], "region": "#r", "texts": [[number, [text]]]}]
        try:
            page.goto(address, wait_until="load", timeout=5000)
            page.wait_for_timeout(20)
            found = page.evaluate(CHECK_SCRIPT, {"expects": expects})
        except Exception:  # a payload that breaks the page is seen, not inert
            detected += 1
            continue
        # The control's own script holds the payload as a string: not a finding by itself.
        markup = [m for m in found["markup"] if not m[3].startswith("var d = ")]
        if (
            found["missing"]
            or markup
            or any(marker in call for call in found["xss"])
            or marker in requested
            or any(marker in message for message in dialogs)
        ):
            detected += 1
        else:
            inert.append(text[:80])
    context.close()
    return {"payloads": len(payloads), "detected": detected, "inert": inert}


def main() -> None:
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="clinikui-security-xss-"))
    thread = None
    try:
        setup_django(scratch)
        from django.contrib.staticfiles.handlers import StaticFilesHandler
        from django.test.testcases import LiveServerThread

        payloads = build_payloads()
        world = World(payloads)
        world.build()
        seeded = time.monotonic() - started
        thread = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
        thread.daemon = True
        thread.start()
        thread.is_ready.wait(timeout=30)
        if thread.error:
            raise thread.error
        base_url = f"http://127.0.0.1:{thread.port}"
        outcome = run_browser(base_url, world.visits)
        categories: dict[str, int] = defaultdict(int)
        for payload in payloads:
            categories[payload.category.split(" (")[0]] += 1
        places = sorted(outcome.tested)
        result = {
            "payloads": len(payloads),
            "categories": dict(categories),
            "places": [
                {"field": f, "page": p, "tested": len(outcome.tested[(f, p)])} for f, p in places
            ],
            "pages": outcome.pages,
            "visits": len(world.visits),
            "executed": outcome.executed,
            "markup": outcome.markup[:50],
            "markup_count": len(outcome.markup),
            "requests": outcome.requests[:50],
            "request_count": len(outcome.requests),
            "missing": outcome.missing[:50],
            "missing_count": len(outcome.missing),
            "csp": outcome.csp[:100],
            "csp_count": len(outcome.csp),
            "errors": outcome.errors[:30],
            "control": outcome.control,
            "seconds_seeding": round(seeded, 1),
            "seconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(result))
    finally:
        if thread is not None:
            thread.terminate()
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
