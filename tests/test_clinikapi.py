"""The ClinikAPI client: headers sent, URLs built, shapes parsed, failures classified, retries.

Everything runs through `httpx.MockTransport` (no sockets) with a fake sleep and a fake clock.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from reports import clinikapi
from reports.clinikapi import (
    Attachment,
    ClientConfig,
    ClinikAPI,
    Code,
    LabChanges,
    NewLab,
    Period,
)
from reports.redaction import RedactAPIKeys

KEY = "clk_test_UnitTestKey4f9Q"
BASE = "https://clinikapi.test"
PAYLOADS = Path(__file__).parent / "payloads"
PDF_BASE64 = base64.b64encode(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n").decode()

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A MockTransport handler that answers from a script and keeps every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            # A fresh response each time, so one scripted answer can serve several requests.
            return httpx.Response(answer.status_code, headers=answer.headers, stream=answer.stream)
        return answer(request)


def make_api(
    handler: Handler,
    *,
    base_url: str = BASE,
    sleeps: list[float] | None = None,
    clock: FakeClock | None = None,
    **config: Any,
) -> ClinikAPI:
    recorded = sleeps if sleeps is not None else []
    return ClinikAPI(
        ClientConfig(
            base_url=base_url, api_key=KEY, transport=httpx.MockTransport(handler), **config
        ),
        sleep=recorded.append,
        rng=random.Random(7),
        clock=clock or FakeClock(),
    )


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def ok(data: object, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    meta = {"requestId": "req_a1b2c3d4", "timestamp": "2026-03-02T14:05:01Z", "status": status}
    return httpx.Response(status, json={"data": data, "meta": meta}, headers=headers)


def error(status: int, code: str | None = None, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"error": "Error", "requestId": "req_e1e2e3e4", **extra}
    if code:
        body["code"] = code
    return httpx.Response(status, json=body, headers=headers)


def page(items: list[dict[str, Any]], cursor: str | None, **extra: Any) -> httpx.Response:
    return ok({"data": items, "cursor": cursor, "hasMore": cursor is not None, **extra})


LAB = payload("lab_flat")["data"]


def new_lab(**changes: Any) -> NewLab:
    fields: dict[str, Any] = {
        "status": "final",
        "code": Code("http://loinc.org", "58410-2", "CBC panel - Blood by Automated count"),
        "patient_id": "pt_8f2k1m",
        "category": "LAB",
        "effective_date_time": datetime(2026, 3, 2, 7, 40, tzinfo=UTC),
        "result_ids": ("obs_hgb51",),
        "conclusion": "Mild normocytic anaemia.",
    }
    return NewLab(**{**fields, **changes})


# --- headers and URLs ------------------------------------------------------------------------


def test_every_request_carries_the_api_key_our_user_agent_and_accepts_json():
    recorder = Recorder(ok(LAB))
    api = make_api(recorder, user_agent="ClinikUI/9.9")

    api.get_lab("lab_r4w9x2")

    headers = recorder.requests[0].headers
    assert headers["x-api-key"] == KEY
    assert headers["user-agent"] == "ClinikUI/9.9"
    assert headers["accept"] == "application/json"


def test_a_read_sends_no_content_type_and_a_write_sends_json():
    recorder = Recorder(ok(LAB, 201))
    api = make_api(recorder)

    api.get_lab("lab_r4w9x2")
    api.create_lab(new_lab())

    read, write = recorder.requests
    assert "content-type" not in read.headers
    assert write.headers["content-type"] == "application/json"
    assert json.loads(write.content)["patientId"] == "pt_8f2k1m"


def test_no_method_override_header_is_sent_with_any_method():
    recorder = Recorder(ok(LAB), ok(LAB), httpx.Response(204))
    api = make_api(recorder)

    api.create_lab(new_lab())
    api.update_lab("lab_r4w9x2", LabChanges(status="amended"))
    api.delete_lab("lab_r4w9x2")

    override_headers = {"x-http-method-override", "x-http-method", "x-method-override"}
    assert [request.method for request in recorder.requests] == ["POST", "PATCH", "DELETE"]
    for request in recorder.requests:
        assert override_headers.isdisjoint(name.lower() for name in request.headers)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://clinikapi.test", "https://clinikapi.test/v1/labs/lab_r4w9x2"),
        ("https://clinikapi.test/", "https://clinikapi.test/v1/labs/lab_r4w9x2"),
        ("https://gw.test/clinik/", "https://gw.test/clinik/v1/labs/lab_r4w9x2"),
    ],
)
def test_paths_are_appended_to_the_base_url_with_or_without_a_trailing_slash(base_url, expected):
    recorder = Recorder(ok(LAB))
    api = make_api(recorder, base_url=base_url)

    api.get_lab("lab_r4w9x2")

    assert str(recorder.requests[0].url) == expected


def test_health_is_read_outside_v1_and_without_the_api_key():
    recorder = Recorder(
        httpx.Response(200, json={"status": "ok", "timestamp": "2026-03-02T14:00:00Z"})
    )
    api = make_api(recorder, base_url="https://clinikapi.test/")

    health = api.health()

    assert str(recorder.requests[0].url) == "https://clinikapi.test/health"
    assert "x-api-key" not in recorder.requests[0].headers
    assert health.is_ok
    assert health.timestamp == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "x" * 129, "", "..", "a b", "a?b", "lab%2F1"])
def test_ids_that_could_change_the_url_are_refused_before_anything_is_sent(bad_id):
    recorder = Recorder(ok(LAB))
    api = make_api(recorder)

    with pytest.raises(clinikapi.RequestRefused) as caught:
        api.get_lab(bad_id)

    assert recorder.requests == []
    assert isinstance(caught.value, clinikapi.NotSent)
    assert caught.value.issues[0].field == "id"


def test_an_id_of_128_allowed_characters_is_used_verbatim_in_the_path():
    long_id = "A.b_c-9" + "z" * 121
    recorder = Recorder(ok({**LAB, "id": long_id}))
    api = make_api(recorder)

    lab = api.get_lab(long_id)

    assert recorder.requests[0].url.path == f"/v1/labs/{long_id}"
    assert lab.id == long_id


def test_search_filters_use_contract_names_dates_booleans_and_a_clamped_count():
    recorder = Recorder(page([], None))
    api = make_api(recorder)

    api.search_labs(
        patient_id="pt_8f2k1m",
        status="final",
        date_from=date(2026, 3, 1),
        date_to=datetime(2026, 3, 3, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
        sort="-date",
        count=500,
    )
    api.search_patients(name="Marrow", birth_date=date(1984, 11, 9), active=False)

    labs, patients = (dict(request.url.params) for request in recorder.requests)
    assert labs == {
        "patientId": "pt_8f2k1m",
        "status": "final",
        "dateFrom": "2026-03-01",
        "dateTo": "2026-03-04",
        "sort": "-date",
        "count": "100",
    }
    assert patients == {"name": "Marrow", "birthDate": "1984-11-09", "active": "false"}


# --- pre-flight refusals ---------------------------------------------------------------------


def test_a_body_over_one_mebibyte_is_refused_before_sending():
    recorder = Recorder(ok(LAB, 201))
    api = make_api(recorder)
    big_pdf = base64.b64encode(b"%PDF-1.7\n" + b"0" * 800_000).decode()

    with pytest.raises(clinikapi.RequestRefused) as caught:
        api.create_lab(new_lab(presented_form=(Attachment("application/pdf", "Scan", big_pdf),)))

    assert recorder.requests == []
    assert "1048576 bytes" in caught.value.issues[0].message


def test_a_conclusion_over_5000_characters_is_refused_before_sending():
    recorder = Recorder(ok(LAB, 201))
    api = make_api(recorder)

    with pytest.raises(clinikapi.RequestRefused) as caught:
        api.create_lab(new_lab(conclusion="x" * 5001))

    assert recorder.requests == []
    assert [issue.field for issue in caught.value.issues] == ["conclusion"]


def test_a_conclusion_of_exactly_5000_characters_is_sent():
    recorder = Recorder(ok(LAB, 201))
    api = make_api(recorder)

    api.create_lab(new_lab(conclusion="x" * 5000))

    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"status": "signed"}, "status"), ({"category": "LABS"}, "category")],
)
def test_a_status_or_category_outside_the_contract_enums_is_refused(changes, field):
    recorder = Recorder(ok(LAB, 201))
    api = make_api(recorder)

    with pytest.raises(clinikapi.RequestRefused) as caught:
        api.create_lab(new_lab(**changes))

    assert recorder.requests == []
    assert [issue.field for issue in caught.value.issues] == [field]


@pytest.mark.parametrize(
    ("attachment", "problem"),
    [
        ({"contentType": "application/pdf", "data": "not base64!"}, "must be standard base64"),
        (
            {"contentType": "application/pdf", "data": "data:application/pdf;base64,JVBERi0x"},
            "base64",
        ),
        (
            {"contentType": "application/pdf", "data": base64.b64encode(b"<html>").decode()},
            "is not a PDF",
        ),
        ({"data": PDF_BASE64}, "Required"),
    ],
)
def test_attachment_data_that_is_not_base64_or_not_a_pdf_is_refused(attachment, problem):
    recorder = Recorder(ok(LAB))
    api = make_api(recorder)

    with pytest.raises(clinikapi.RequestRefused) as caught:
        api.update_lab("lab_r4w9x2", {"presentedForm": [attachment]})

    assert recorder.requests == []
    assert problem in caught.value.issues[0].message
    assert caught.value.issues[0].field.startswith("presentedForm.0.")


def test_a_pdf_attachment_with_a_pdf_header_is_sent():
    recorder = Recorder(ok(LAB))
    api = make_api(recorder)

    api.update_lab(
        "lab_r4w9x2", LabChanges(presented_form=(Attachment("application/pdf", "CBC", PDF_BASE64),))
    )

    sent = json.loads(recorder.requests[0].content)
    assert sent == {
        "presentedForm": [{"contentType": "application/pdf", "title": "CBC", "data": PDF_BASE64}]
    }


@pytest.mark.parametrize(
    "key", ["patientId", "code", "category", "encounterId", "specimenIds", "basedOn", "media"]
)
def test_an_update_refuses_fields_the_api_cannot_change(key):
    recorder = Recorder(ok(LAB))
    api = make_api(recorder)

    with pytest.raises(clinikapi.RequestRefused) as caught:
        api.update_lab("lab_r4w9x2", {"status": "amended", key: "LAB"})

    assert recorder.requests == []
    assert [issue.field for issue in caught.value.issues] == [key]


def test_pre_flight_refusals_are_not_retryable_although_nothing_was_sent():
    refused = clinikapi.RequestRefused()

    assert isinstance(refused, clinikapi.NotSent)
    assert clinikapi.NotSent.retryable
    assert not refused.retryable


# --- payloads we send ------------------------------------------------------------------------


def test_a_new_lab_payload_uses_contract_names_and_drops_unset_fields():
    lab = new_lab(
        code=Code("http://loinc.org", "58410-2"),
        conclusion_codes=(Code("http://snomed.info/sct", "271737000", "Anemia"),),
        presented_form=(Attachment("application/pdf", "CBC", PDF_BASE64),),
        result_ids=(),
    )

    sent = lab.to_payload()

    assert sent == {
        "status": "final",
        "code": {"system": "http://loinc.org", "code": "58410-2"},
        "patientId": "pt_8f2k1m",
        "category": "LAB",
        "effectiveDateTime": "2026-03-02T07:40:00Z",
        "conclusion": "Mild normocytic anaemia.",
        "conclusionCodes": [
            {"system": "http://snomed.info/sct", "code": "271737000", "display": "Anemia"}
        ],
        "presentedForm": [{"contentType": "application/pdf", "title": "CBC", "data": PDF_BASE64}],
    }


def test_date_times_are_sent_in_utc_with_a_z_suffix():
    paris_winter = timezone(timedelta(hours=1))
    lab = new_lab(
        effective_date_time=None,
        effective_period=Period(
            datetime(2026, 3, 2, 8, 40, tzinfo=paris_winter),
            datetime(2026, 3, 3, 8, 40, 0, 250_000, tzinfo=paris_winter),
        ),
    )

    sent = lab.to_payload()

    assert sent["effectivePeriod"] == {
        "start": "2026-03-02T07:40:00Z",
        "end": "2026-03-03T07:40:00.250Z",
    }
    assert "effectiveDateTime" not in sent


def test_a_naive_date_time_is_refused():
    lab = new_lab(effective_date_time=datetime(2026, 3, 2, 7, 40))  # noqa: DTZ001 - on purpose

    with pytest.raises(clinikapi.RequestRefused) as caught:
        lab.to_payload()

    assert caught.value.issues[0].field == "effectiveDateTime"


def test_lab_changes_send_only_set_fields_and_empty_lists_to_clear_them():
    changes = LabChanges(status="amended", conclusion_codes=(), result_ids=("obs_1", "obs_2"))

    sent = changes.to_payload()

    assert sent == {"status": "amended", "conclusionCodes": [], "resultIds": ["obs_1", "obs_2"]}


def test_a_free_text_code_is_sent_as_a_plain_string():
    lab = new_lab(code="Peripheral smear review")

    assert lab.to_payload()["code"] == "Peripheral smear review"


def test_create_lab_returns_the_stored_report_with_its_request_id():
    recorder = Recorder(httpx.Response(201, json=payload("lab_flat")))
    api = make_api(recorder)

    written = api.create_lab(new_lab())

    assert recorder.requests[0].url.path == "/v1/labs"
    assert written.lab.id == "lab_r4w9x2"
    assert written.meta.request_id == "req_t5y8u1i3"
    assert written.meta.status == 201


def test_create_lab_replays_a_stored_payload_snapshot_unchanged():
    snapshot = new_lab().to_payload()
    recorder = Recorder(ok(LAB, 201))
    api = make_api(recorder)

    api.create_lab(json.loads(json.dumps(snapshot)))

    assert json.loads(recorder.requests[0].content) == snapshot


def test_delete_returns_the_meta_of_the_empty_204():
    recorder = Recorder(httpx.Response(204, headers={"X-Request-Id": "req_d1d2d3d4"}))
    api = make_api(recorder)

    meta = api.delete_lab("lab_r4w9x2")

    assert recorder.requests[0].method == "DELETE"
    assert meta.request_id == "req_d1d2d3d4"
    assert meta.status == 204


# --- parsing ---------------------------------------------------------------------------------


def test_a_flat_lab_is_parsed_with_every_contract_field():
    api = make_api(Recorder(httpx.Response(200, json=payload("lab_flat"))))

    lab = api.get_lab("lab_r4w9x2")

    assert lab.status == "final"
    assert lab.code == Code("http://loinc.org", "58410-2", "CBC panel - Blood by Automated count")
    assert (lab.patient_id, lab.encounter_id, lab.category) == ("pt_8f2k1m", "enc_3n7q0v", "LAB")
    assert lab.effective_start == datetime(2026, 3, 2, 7, 40, tzinfo=UTC)
    assert lab.result_ids == ("obs_hgb51", "obs_wbc52", "obs_plt53")
    assert lab.conclusion_codes == (Code("http://snomed.info/sct", "271737000", "Anemia"),)
    assert (lab.performer, lab.results_interpreter) == ("prac_lab017", "prac_hvarga")
    assert lab.specimen_ids == ("spec_b17c",)
    assert lab.presented_form == (
        Attachment("application/pdf", "CBC report 2026-03-02", "JVBERi0xLjcKJcK1wrYK"),
    )
    assert lab.based_on == ("sr_77a",)
    assert lab.media == (clinikapi.MediaLink("media_9q", "Smear"),)
    assert lab.updated_at == datetime(2026, 3, 2, 14, 5, 1, tzinfo=UTC)


def test_a_fhir_diagnostic_report_reads_the_same_as_the_flat_shape():
    flat = make_api(Recorder(httpx.Response(200, json=payload("lab_flat")))).get_lab("lab_r4w9x2")
    api = make_api(Recorder(httpx.Response(200, json=payload("lab_fhir"))))

    fhir = api.get_lab("lab_r4w9x2")

    assert fhir == flat.__class__(**{**_fields(flat), "created_at": None})


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def test_a_bare_fhir_resource_without_an_envelope_is_parsed():
    bare = payload("lab_fhir")["data"]
    api = make_api(Recorder(httpx.Response(200, json=bare, headers={"X-Request-Id": "req_h"})))

    lab = api.get_lab("lab_r4w9x2")

    assert lab.patient_id == "pt_8f2k1m"


def test_patients_read_the_same_from_flat_and_fhir_shapes():
    flat = make_api(Recorder(httpx.Response(200, json=payload("patient_flat"))))
    fhir = make_api(Recorder(httpx.Response(200, json=payload("patient_fhir"))))

    from_flat = flat.get_patient("pt_8f2k1m")
    from_fhir = fhir.get_patient("pt_8f2k1m")

    assert from_flat.full_name == "Ilse N. Marrow"
    assert from_fhir.full_name == "Ilse Marrow"
    assert (from_fhir.first_name, from_fhir.middle_name, from_fhir.last_name) == (
        "Ilse",
        "N.",
        "Marrow",
    )
    for patient in (from_flat, from_fhir):
        assert patient.birth_date == date(1984, 11, 9)
        assert (patient.gender, patient.active) == ("female", True)


def test_a_patient_without_full_name_is_named_from_first_and_last_name():
    api = make_api(Recorder(ok({"id": "pt_1", "firstName": "Ilse", "lastName": "Marrow"})))

    patient = api.get_patient("pt_1")

    assert patient.full_name == "Ilse Marrow"


def test_practitioners_read_the_same_from_flat_and_fhir_shapes():
    flat = make_api(Recorder(httpx.Response(200, json=payload("practitioner_flat"))))
    fhir = make_api(Recorder(httpx.Response(200, json=payload("practitioner_fhir"))))

    from_flat = flat.get_practitioner("prac_hvarga")
    from_fhir = fhir.get_practitioner("prac_hvarga")

    for practitioner in (from_flat, from_fhir):
        assert practitioner.display_name == "Dr. Hedda Varga, MD"
        assert practitioner.npi == "1649283705"
        assert practitioner.active is True
    assert from_flat.specialty == "Haematology"


def test_observations_read_the_same_from_flat_and_fhir_shapes():
    flat = make_api(Recorder(httpx.Response(200, json=payload("observation_flat"))))
    fhir = make_api(Recorder(httpx.Response(200, json=payload("observation_fhir"))))

    from_flat = flat.get_observation("obs_hgb51")
    from_fhir = fhir.get_observation("obs_hgb51")

    for observation in (from_flat, from_fhir):
        assert observation.code == Code(
            "http://loinc.org", "718-7", "Hemoglobin [Mass/volume] in Blood"
        )
        assert (observation.patient_id, observation.encounter_id) == ("pt_8f2k1m", "enc_3n7q0v")
        assert observation.category == "laboratory"
        assert observation.value_display == "11.2 g/dL"
        assert observation.value_quantity == clinikapi.Quantity(
            Decimal("11.2"), "g/dL", "http://unitsofmeasure.org", "g/dL"
        )
        assert observation.unit == "g/dL"
        assert observation.interpretation == "L"
        assert observation.is_abnormal
        assert not observation.is_critical
        assert observation.reference_range_text == "12.0–15.5 g/dL"
        assert observation.updated_at == datetime(2026, 3, 2, 9, 2, 44, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interpretation", "is_critical"),
    [("HH", True), ("LL", True), ("H", False), ("N", False), (None, False)],
)
def test_only_hh_and_ll_style_interpretations_mark_an_observation_critical(
    interpretation, is_critical
):
    api = make_api(Recorder(ok({"id": "obs_1", "interpretation": interpretation})))

    observation = api.get_observation("obs_1")

    assert observation.is_critical is is_critical


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Peripheral smear", Code(None, None, "Peripheral smear")),
        (
            {"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"},
            Code("http://loinc.org", "718-7", "Hemoglobin"),
        ),
        (
            {"coding": [{"system": "http://loinc.org", "code": "718-7"}], "text": "Hb"},
            Code("http://loinc.org", "718-7", "Hb"),
        ),
        ({"coding": [], "text": "Hb (free text)"}, Code(None, None, "Hb (free text)")),
        ({}, None),
        (42, None),
    ],
)
def test_codes_are_normalised_from_a_string_a_flat_object_or_a_codeable_concept(value, expected):
    assert Code.parse(value) == expected


def test_a_comparator_stays_in_front_of_a_quantity_value():
    quantity = clinikapi.Quantity.parse({"value": 0.01, "comparator": "<", "unit": "ng/mL"})

    assert quantity is not None
    assert quantity.display == "<0.01 ng/mL"


# --- envelope metadata and rate limits -------------------------------------------------------


def test_response_meta_is_read_from_the_envelope_body_before_headers():
    body = payload("lab_flat")
    body["meta"].update(rateLimitTotal=100, rateLimitRemaining=97, rateLimitReset=42)
    headers = {"X-Request-Id": "req_header", "X-RateLimit-Remaining": "5"}
    api = make_api(Recorder(httpx.Response(201, json=body, headers=headers)))

    written = api.create_lab(new_lab())

    assert written.meta.request_id == "req_t5y8u1i3"
    assert written.meta.timestamp == datetime(2026, 3, 2, 14, 5, 1, 217_000, tzinfo=UTC)
    assert written.meta.rate_limit == clinikapi.RateLimit(100, 97, 42)


def test_response_meta_falls_back_to_headers_when_the_body_has_none():
    headers = {
        "X-Request-Id": "req_h1h2h3h4",
        "X-Timestamp": "2026-03-02T14:05:01Z",
        "X-RateLimit-Limit": "200",
        "X-RateLimit-Remaining": "150",
        "X-RateLimit-Reset": "30",
    }
    body: dict[str, Any] = {"data": {"data": [], "cursor": None, "hasMore": False}}
    api = make_api(Recorder(httpx.Response(200, json=body, headers=headers)))

    result = api.search_patients(name="Marrow")

    assert result.meta.request_id == "req_h1h2h3h4"
    assert result.meta.timestamp == datetime(2026, 3, 2, 14, 5, 1, tzinfo=UTC)
    assert result.meta.rate_limit == clinikapi.RateLimit(200, 150, 30)
    assert result.total is None


def test_the_client_remembers_the_latest_rate_limit_figures_even_from_errors():
    api = make_api(
        Recorder(
            ok(LAB, headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "9"}),
            error(404, "NOT_FOUND", headers={"X-RateLimit-Remaining": "8"}),
        )
    )

    api.get_lab("lab_1")
    first = api.last_rate_limit
    with pytest.raises(clinikapi.NotFound):
        api.get_lab("lab_2")

    assert first == clinikapi.RateLimit(100, 9, None)
    assert api.last_rate_limit == clinikapi.RateLimit(None, 8, None)


# --- error classification (§7.3, SUB-04) -----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "INVALID_JSON", clinikapi.InvalidRequest),
        (400, "METHOD_OVERRIDE_REJECTED", clinikapi.InvalidRequest),
        (401, "UNAUTHORIZED", clinikapi.Unauthorized),
        (401, "INVALID_KEY_FORMAT", clinikapi.Unauthorized),
        (401, "INVALID_KEY", clinikapi.Unauthorized),
        (401, "KEY_REVOKED", clinikapi.Unauthorized),
        (401, "KEY_EXPIRED", clinikapi.Unauthorized),
        (403, "FORBIDDEN", clinikapi.Forbidden),
        (404, "NOT_FOUND", clinikapi.NotFound),
        (409, "CONFLICT", clinikapi.Conflict),
        (413, "PAYLOAD_TOO_LARGE", clinikapi.InvalidRequest),
        (422, "VALIDATION_ERROR", clinikapi.ValidationFailed),
        (429, "RATE_LIMITED", clinikapi.RateLimited),
        (429, None, clinikapi.RateLimited),
        (429, "MONTHLY_QUOTA_EXCEEDED", clinikapi.QuotaExceeded),
        (429, "SANDBOX_QUOTA_EXCEEDED", clinikapi.QuotaExceeded),
        (500, "INTERNAL_ERROR", clinikapi.ServerError),
        (502, None, clinikapi.ServerError),
        (503, None, clinikapi.ServerError),
        (504, None, clinikapi.ServerError),
        (302, None, clinikapi.UnexpectedResponse),
    ],
)
def test_each_status_and_code_maps_to_its_exception_class(status, code, expected):
    recorder = Recorder(error(status, code))
    api = make_api(recorder, max_read_retries=0)

    with pytest.raises(clinikapi.ClinikAPIError) as caught:
        api.get_lab("lab_r4w9x2")

    assert type(caught.value) is expected
    assert (caught.value.status, caught.value.code) == (status, code)
    assert len(recorder.requests) == 1


def test_4xx_answers_are_rejections_and_5xx_answers_leave_the_outcome_unknown():
    assert issubclass(clinikapi.ValidationFailed, clinikapi.Rejected)
    assert issubclass(clinikapi.QuotaExceeded, clinikapi.Rejected)
    assert issubclass(clinikapi.ServerError, clinikapi.OutcomeUnknown)
    assert issubclass(clinikapi.OutcomeUnknown, clinikapi.Unavailable)
    assert not clinikapi.QuotaExceeded.retryable
    assert clinikapi.RateLimited.retryable


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("Name or service not known"),
        httpx.ConnectTimeout("timed out"),
        httpx.PoolTimeout("no connection free"),
    ],
)
def test_failures_before_the_request_left_are_classified_not_sent(failure):
    recorder = Recorder(failure)
    api = make_api(recorder)

    with pytest.raises(clinikapi.NotSent) as caught:
        api.create_lab(new_lab())

    assert caught.value.__cause__ is failure
    assert caught.value.retryable


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.WriteTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response"),
        httpx.ReadError("Connection reset by peer"),
    ],
)
def test_failures_after_the_request_left_are_classified_outcome_unknown(failure):
    recorder = Recorder(failure)
    api = make_api(recorder)

    with pytest.raises(clinikapi.OutcomeUnknown) as caught:
        api.create_lab(new_lab())

    assert not isinstance(caught.value, clinikapi.NotSent)
    assert caught.value.__cause__ is failure


def test_a_connection_dropped_in_the_middle_of_the_body_leaves_the_outcome_unknown():
    class BrokenStream(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b'{"data": {"id": '
            raise httpx.RemoteProtocolError("peer closed connection")

    api = make_api(Recorder(httpx.Response(201, stream=BrokenStream())))

    with pytest.raises(clinikapi.OutcomeUnknown) as caught:
        api.create_lab(new_lab())

    assert caught.value.status == 201


def test_a_2xx_body_that_is_not_json_leaves_the_outcome_unknown():
    api = make_api(Recorder(httpx.Response(201, content=b"<html>created</html>")))

    with pytest.raises(clinikapi.UnexpectedResponse) as caught:
        api.create_lab(new_lab())

    assert isinstance(caught.value, clinikapi.OutcomeUnknown)


def test_redirects_are_not_followed():
    recorder = Recorder(httpx.Response(301, headers={"Location": "https://elsewhere.test/v1/labs"}))
    api = make_api(recorder, max_read_retries=0)

    with pytest.raises(clinikapi.UnexpectedResponse):
        api.get_lab("lab_r4w9x2")

    assert [str(request.url.host) for request in recorder.requests] == ["clinikapi.test"]


def test_errors_carry_message_code_and_request_id_from_the_body():
    body = {
        "error": "Quota exceeded",
        "message": "Monthly request quota exhausted",
        "code": "MONTHLY_QUOTA_EXCEEDED",
        "requestId": "req_q1q2q3q4",
    }
    api = make_api(Recorder(httpx.Response(429, json=body, headers={"X-Request-Id": "req_x"})))

    with pytest.raises(clinikapi.QuotaExceeded) as caught:
        api.get_lab("lab_r4w9x2")

    assert caught.value.message == "Monthly request quota exhausted"
    assert caught.value.request_id == "req_q1q2q3q4"
    assert caught.value.retry_after is None
    assert str(caught.value) == (
        "Monthly request quota exhausted (HTTP 429, code MONTHLY_QUOTA_EXCEEDED,"
        " request req_q1q2q3q4, during GET /v1/labs/lab_r4w9x2)"
    )


def test_an_error_without_a_json_body_takes_the_reason_phrase_and_header_request_id():
    response = httpx.Response(502, content=b"Bad gateway", headers={"X-Request-Id": "req_g1"})
    api = make_api(Recorder(response), max_read_retries=0)

    with pytest.raises(clinikapi.ServerError) as caught:
        api.get_lab("lab_r4w9x2")

    assert caught.value.message == "Bad Gateway"
    assert caught.value.request_id == "req_g1"
    assert caught.value.code is None


def test_validation_issues_are_read_from_issues_with_the_field_before_the_colon():
    body = {
        "error": "Validation Error",
        "code": "VALIDATION_ERROR",
        "issues": [
            {"severity": "error", "code": "invalid", "diagnostics": "patientId: Required"},
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "conclusion: String must contain at most 5000 character(s)",
            },
        ],
    }
    api = make_api(Recorder(httpx.Response(422, json=body)))

    with pytest.raises(clinikapi.ValidationFailed) as caught:
        api.create_lab(new_lab())

    assert caught.value.issues == (
        clinikapi.Issue("patientId", "Required"),
        clinikapi.Issue("conclusion", "String must contain at most 5000 character(s)"),
    )


def test_validation_issues_are_read_from_a_fhir_operation_outcome():
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "invalid", "diagnostics": "status: Invalid enum value"},
            {"severity": "warning", "code": "processing", "details": {"text": "Slow index"}},
        ],
    }
    api = make_api(Recorder(httpx.Response(422, json=body)))

    with pytest.raises(clinikapi.ValidationFailed) as caught:
        api.create_lab(new_lab())

    assert caught.value.issues == (
        clinikapi.Issue("status", "Invalid enum value"),
        clinikapi.Issue("", "Slow index", "warning"),
    )
    assert caught.value.message == "Unprocessable Entity"


@pytest.mark.parametrize(
    ("retry_after", "reset", "expected"),
    [
        ("23", None, 23.0),
        ("soon", "7", 7.0),
        ("-5", None, 1.0),
        ("0", None, 1.0),
        ("99999999", None, 900.0),
        ("nan", None, None),
        (None, "42", 42.0),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_retry_after_is_parsed_clamped_and_falls_back_to_the_rate_limit_reset(
    retry_after, reset, expected
):
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if reset is not None:
        headers["X-RateLimit-Reset"] = reset
    api = make_api(Recorder(error(429, "RATE_LIMITED", headers=headers)), max_read_retries=0)

    with pytest.raises(clinikapi.RateLimited) as caught:
        api.get_lab("lab_r4w9x2")

    assert caught.value.retry_after == expected


def test_a_5xx_ignores_the_rate_limit_reset_as_a_retry_hint():
    response = error(503, headers={"X-RateLimit-Reset": "42"})
    api = make_api(Recorder(response), max_read_retries=0)

    with pytest.raises(clinikapi.ServerError) as caught:
        api.get_lab("lab_r4w9x2")

    assert caught.value.retry_after is None


# --- pagination ------------------------------------------------------------------------------


def test_iter_all_follows_cursors_over_three_pages_and_drops_phantom_and_foreign_rows():
    def lab(lab_id: str, patient_id: str = "pt_1") -> dict[str, Any]:
        return {"id": lab_id, "status": "final", "patientId": patient_id}

    recorder = Recorder(
        page([lab("lab_a"), lab("lab_b"), {"id": "", "status": "final"}], "3", total=6),
        page([lab("lab_c"), lab("lab_x", "pt_other")], "5"),  # no total, short page
        page([lab("lab_d"), {"status": "final", "patientId": "pt_1"}], None, total=6),
    )
    api = make_api(recorder)

    labs = list(clinikapi.iter_all(api.search_labs, patient_id="pt_1", count=3))

    assert [item.id for item in labs] == ["lab_a", "lab_b", "lab_c", "lab_d"]
    assert [request.url.params.get("cursor") for request in recorder.requests] == [None, "3", "5"]
    assert {request.url.params["patientId"] for request in recorder.requests} == {"pt_1"}


def test_iter_all_stops_at_the_limit_without_fetching_more_pages():
    recorder = Recorder(page([{"id": "pt_a"}, {"id": "pt_b"}], "2"), page([{"id": "pt_c"}], None))
    api = make_api(recorder)

    patients = list(clinikapi.iter_all(api.search_patients, limit=2, name="Marrow"))

    assert [patient.id for patient in patients] == ["pt_a", "pt_b"]
    assert len(recorder.requests) == 1


def test_iter_all_stops_when_the_server_hands_back_a_cursor_it_already_gave():
    recorder = Recorder(page([{"id": "pt_a"}], "1"), page([{"id": "pt_a"}, {"id": "pt_b"}], "1"))
    api = make_api(recorder)

    patients = list(clinikapi.iter_all(api.search_patients, name="Marrow"))

    assert [patient.id for patient in patients] == ["pt_a", "pt_b"]
    assert len(recorder.requests) == 2


def test_a_page_claiming_more_without_a_cursor_is_treated_as_the_last_page():
    api = make_api(Recorder(ok({"data": [{"id": "pt_a"}], "hasMore": True})))

    result = api.search_patients(name="Marrow")

    assert result.has_more is False


def test_search_labs_reapplies_the_category_filter_the_server_may_ignore():
    rows = [
        {"id": "lab_a", "status": "final", "category": "RAD"},
        {"id": "lab_b", "status": "final", "category": "LAB"},
    ]
    recorder = Recorder(page(rows, None))
    api = make_api(recorder)

    result = api.search_labs(category="RAD")

    assert [lab.id for lab in result.items] == ["lab_a"]
    assert recorder.requests[0].url.params["category"] == "RAD"


# --- retries (§9, SUB-04, SUB-06) ------------------------------------------------------------


def test_creating_a_lab_is_never_retried_after_a_503():
    recorder = Recorder(error(503, headers={"Retry-After": "1"}), ok(LAB, 201))
    sleeps: list[float] = []
    api = make_api(recorder, sleeps=sleeps)

    with pytest.raises(clinikapi.OutcomeUnknown):
        api.create_lab(new_lab())

    assert len(recorder.requests) == 1
    assert sleeps == []


def test_creating_a_lab_is_never_retried_after_a_read_timeout():
    recorder = Recorder(httpx.ReadTimeout("timed out"), ok(LAB, 201))
    api = make_api(recorder)

    with pytest.raises(clinikapi.OutcomeUnknown):
        api.create_lab(new_lab())

    assert len(recorder.requests) == 1


def test_creating_a_lab_is_not_retried_even_when_rate_limited():
    recorder = Recorder(error(429, "RATE_LIMITED", headers={"Retry-After": "2"}), ok(LAB, 201))
    api = make_api(recorder)

    with pytest.raises(clinikapi.RateLimited):
        api.create_lab(new_lab())

    assert len(recorder.requests) == 1


def test_updates_and_deletes_are_left_to_the_outbox_to_retry():
    recorder = Recorder(httpx.ConnectError("refused"))
    api = make_api(recorder)

    with pytest.raises(clinikapi.NotSent):
        api.update_lab("lab_r4w9x2", LabChanges(status="cancelled"))
    with pytest.raises(clinikapi.NotSent):
        api.delete_lab("lab_r4w9x2")

    assert [request.method for request in recorder.requests] == ["PATCH", "DELETE"]


def test_a_read_is_retried_twice_and_then_the_last_error_is_raised():
    recorder = Recorder(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), error(502))
    sleeps: list[float] = []
    api = make_api(recorder, sleeps=sleeps)

    with pytest.raises(clinikapi.ServerError):
        api.get_lab("lab_r4w9x2")

    assert len(recorder.requests) == 3
    assert len(sleeps) == 2


def test_a_read_returns_the_answer_of_a_successful_retry():
    recorder = Recorder(error(503), ok(LAB))
    api = make_api(recorder)

    lab = api.get_lab("lab_r4w9x2")

    assert lab.id == "lab_r4w9x2"
    assert len(recorder.requests) == 2


def test_read_backoff_is_full_jitter_under_a_doubling_ceiling():
    recorder = Recorder(error(503), error(503), error(503))
    sleeps: list[float] = []
    api = make_api(recorder, sleeps=sleeps)
    expected_rng = random.Random(7)

    with pytest.raises(clinikapi.ServerError):
        api.get_lab("lab_r4w9x2")

    assert sleeps == [expected_rng.uniform(0, 1.0), expected_rng.uniform(0, 2.0)]
    assert 0 <= sleeps[0] <= 1.0
    assert 0 <= sleeps[1] <= 2.0


def test_read_backoff_never_waits_less_than_retry_after():
    recorder = Recorder(
        error(429, "RATE_LIMITED", headers={"Retry-After": "5"}),
        error(429, "RATE_LIMITED", headers={"Retry-After": "soon", "X-RateLimit-Reset": "3"}),
        ok(LAB),
    )
    sleeps: list[float] = []
    api = make_api(recorder, sleeps=sleeps)

    api.get_lab("lab_r4w9x2")

    assert sleeps == [5.0, 3.0]


def test_a_read_is_not_retried_when_the_server_asks_for_a_longer_wait_than_allowed():
    recorder = Recorder(error(429, "RATE_LIMITED", headers={"Retry-After": "120"}), ok(LAB))
    sleeps: list[float] = []
    api = make_api(recorder, sleeps=sleeps, max_retry_wait=10.0)

    with pytest.raises(clinikapi.RateLimited) as caught:
        api.get_lab("lab_r4w9x2")

    assert caught.value.retry_after == 120.0
    assert sleeps == []
    assert len(recorder.requests) == 1


def test_quota_exhaustion_and_rejections_are_not_retried_on_reads():
    recorder = Recorder(error(429, "SANDBOX_QUOTA_EXCEEDED"), error(404, "NOT_FOUND"))
    api = make_api(recorder)

    with pytest.raises(clinikapi.QuotaExceeded):
        api.get_lab("lab_r4w9x2")
    with pytest.raises(clinikapi.NotFound):
        api.get_lab("lab_r4w9x2")

    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (6, 60.0), (40, 60.0)]
)
def test_backoff_delay_stays_under_the_capped_exponential_ceiling(attempt, ceiling):
    class Highest(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    delay = clinikapi.backoff_delay(attempt, retry_after=None, rng=Highest())

    assert delay == ceiling


# --- the overall deadline (SUB-09) -----------------------------------------------------------


class DrippingBody(httpx.SyncByteStream):
    """Sends a body a few bytes at a time, moving the fake clock on by `step` per chunk."""

    def __init__(self, clock: FakeClock, chunks: list[bytes], step: float) -> None:
        self.clock, self.chunks, self.step = clock, chunks, step
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.clock.now += self.step
            yield chunk

    def close(self) -> None:
        self.closed = True


def test_a_slowly_dripping_body_is_cut_off_at_the_overall_deadline():
    clock = FakeClock()
    body = json.dumps({"data": LAB}).encode()
    drip = DrippingBody(clock, [body[i : i + 10] for i in range(0, len(body), 10)], step=10.0)
    recorder = Recorder(httpx.Response(200, stream=drip))
    api = make_api(recorder, clock=clock, deadline=30.0, max_read_retries=0)

    with pytest.raises(clinikapi.DeadlineExceeded) as caught:
        api.get_lab("lab_r4w9x2")

    assert isinstance(caught.value, clinikapi.OutcomeUnknown)
    assert clock.now == 1040.0  # gave up on the fourth chunk, not after the whole body
    assert drip.closed


def test_a_body_that_arrives_within_the_deadline_is_read_in_full():
    clock = FakeClock()
    body = json.dumps({"data": LAB}).encode()
    drip = DrippingBody(clock, [body[:50], body[50:]], step=14.0)
    api = make_api(Recorder(httpx.Response(200, stream=drip)), clock=clock, deadline=30.0)

    lab = api.get_lab("lab_r4w9x2")

    assert lab.id == "lab_r4w9x2"


# --- secrets (SEC-01, SEC-02) ----------------------------------------------------------------


def test_the_api_key_appears_in_no_config_client_or_exception_text():
    echoed = error(401, "INVALID_KEY", message=f"Key {KEY} is not valid")
    api = make_api(Recorder(echoed))

    with pytest.raises(clinikapi.Unauthorized) as caught:
        api.get_lab("lab_r4w9x2")
    texts = [
        str(api.config),
        repr(api.config),
        repr(api),
        str(caught.value),
        repr(caught.value),
        str(clinikapi.Misconfigured()),
    ]

    for text in texts:
        assert KEY not in text
    assert "clk_test_[redacted]" in repr(api.config)
    assert caught.value.message == "Key clk_test_[redacted] is not valid"


def test_a_misconfigured_key_is_not_echoed_in_the_error():
    bad_key = "sk_live_NotAClinikKey123"

    with pytest.raises(clinikapi.Misconfigured) as caught:
        ClientConfig(base_url=BASE, api_key=bad_key)

    assert bad_key not in str(caught.value)
    assert bad_key not in repr(caught.value)


def test_the_redaction_filter_masks_keys_in_the_message_and_its_arguments():
    record = logging.LogRecord(
        "clinikui.clinikapi", logging.ERROR, __file__, 1, "sent %s to %s", (KEY, BASE), None
    )
    inline = logging.LogRecord("x", logging.ERROR, __file__, 1, f"key={KEY}", None, None)

    assert RedactAPIKeys().filter(record)
    RedactAPIKeys().filter(inline)

    formatted = logging.Formatter("%(message)s").format(record)
    assert formatted == f"sent clk_test_[redacted] to {BASE}"
    assert inline.getMessage() == "key=clk_test_[redacted]"


def test_the_redaction_filter_masks_keys_in_exception_text():
    try:
        raise RuntimeError(f"boom with clk_live_{'Z' * 20}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())

    RedactAPIKeys().filter(record)
    formatted = logging.Formatter().format(record)

    assert "Z" * 20 not in formatted
    assert "boom with clk_live_[redacted]" in formatted


def test_call_logs_name_the_path_status_and_request_id_but_never_query_values_or_the_key(caplog):
    api = make_api(Recorder(page([], None)))

    with caplog.at_level(logging.DEBUG, logger="clinikui.clinikapi"):
        api.search_patients(name="Marrow", birth_date=date(1984, 11, 9))

    ours = [record for record in caplog.records if record.name == "clinikui.clinikapi"]
    assert [record.getMessage() for record in ours] == [
        "ClinikAPI GET /v1/patients -> 200 in 0 ms (request req_a1b2c3d4)"
    ]
    assert ours[0].clinikapi_request_id == "req_a1b2c3d4"
    for record in ours:
        assert KEY not in record.getMessage()


def test_the_request_lines_httpx_logs_lose_their_query_string(caplog):
    api = make_api(Recorder(page([], None)))

    with caplog.at_level(logging.INFO, logger="httpx"):
        api.search_patients(name="Marrow", birth_date=date(1984, 11, 9))

    messages = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert messages == ['HTTP Request: GET https://clinikapi.test/v1/patients "HTTP/1.1 200 OK"']


# --- configuration (WEB-05) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.clinikapi.com",
        "http://127.0.0.1:3000",
        "http://localhost:3000",
        "http://[::1]:3000",
        "http://sandbox.clinikui.invalid",
    ],
)
def test_https_loopback_and_sandbox_base_urls_are_accepted(base_url):
    config = ClientConfig(base_url=base_url, api_key=KEY)

    assert config.base_url == base_url


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.clinikapi.com",
        "ftp://api.clinikapi.com",
        "api.clinikapi.com",
        "https://user:pw@api.clinikapi.com",
        "https://api.clinikapi.com?x=1",
        "https://api.clinikehr.com/v1",
    ],
)
def test_unsafe_or_malformed_base_urls_are_refused_as_misconfigured(base_url):
    with pytest.raises(clinikapi.Misconfigured) as caught:
        ClientConfig(base_url=base_url, api_key=KEY)

    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("api_key", ["", "clk_prod_abc", "clk_live_", "clk_test_abc def"])
def test_a_missing_or_malformed_key_is_misconfigured(api_key):
    with pytest.raises(clinikapi.Misconfigured):
        ClientConfig(base_url=BASE, api_key=api_key)


def test_config_is_read_from_the_clinikapi_settings():
    source = SimpleNamespace(
        CLINIKAPI_BASE_URL="https://clinikapi.test/",
        CLINIKAPI_SECRET_KEY=KEY,
        CLINIKAPI_TIMEOUT=12.5,
        CLINIKAPI_CONNECT_TIMEOUT=2,
        CLINIKAPI_READ_TIMEOUT="7",
    )

    config = ClientConfig.from_settings(source)

    assert config.base_url == "https://clinikapi.test"
    assert config.api_key == KEY
    assert (config.deadline, config.connect_timeout, config.read_timeout) == (12.5, 2.0, 7.0)
    assert (config.write_timeout, config.pool_timeout, config.max_read_retries) == (15.0, 5.0, 2)
    assert config.transport is None


def test_config_defaults_to_the_production_base_url_but_requires_a_key():
    with pytest.raises(clinikapi.Misconfigured):
        ClientConfig.from_settings(SimpleNamespace())

    config = ClientConfig.from_settings(SimpleNamespace(CLINIKAPI_SECRET_KEY=KEY))

    assert config.base_url == "https://api.clinikapi.com"


def test_the_sandbox_transport_turns_dropped_connections_into_httpx_errors():
    class Dropped(Exception):
        def __init__(self, mode: str) -> None:
            self.mode = mode

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        mode, phase = environ["PATH_INFO"].strip("/").split("/")[-2:]
        if phase == "before":
            raise Dropped(mode)
        start_response("200 OK", [("Content-Type", "application/json")])

        def body() -> Iterator[bytes]:
            yield b'{"data": '
            raise Dropped(mode)

        return body()

    transport = clinikapi.SandboxTransport(app, dropped=Dropped)

    with httpx.Client(transport=transport) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("http://sandbox.clinikui.invalid/v1/close/before")
        with pytest.raises(httpx.ReadError):
            client.get("http://sandbox.clinikui.invalid/v1/reset/before")
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("http://sandbox.clinikui.invalid/v1/close/during")


def test_the_shared_client_is_built_once_and_rebuilt_when_a_clinikapi_setting_changes(settings):
    settings.CLINIKAPI_BASE_URL = "https://one.clinikapi.test"
    settings.CLINIKAPI_SECRET_KEY = KEY
    first = clinikapi.get_client()

    again = clinikapi.get_client()
    settings.CLINIKAPI_BASE_URL = "https://two.clinikapi.test"
    rebuilt = clinikapi.get_client()

    assert again is first
    assert rebuilt is not first
    assert rebuilt.config.base_url == "https://two.clinikapi.test"


def test_encounters_read_the_same_from_flat_and_fhir_shapes():
    flat = {
        "id": "enc_3n7q0v",
        "status": "finished",
        "class": "AMB",
        "patientId": "pt_8f2k1m",
        "practitionerId": "prac_hvarga",
        "type": "follow-up",
        "period": {"start": "2026-03-02T07:15:00Z", "end": "2026-03-02T07:45:00Z"},
        "lengthMinutes": 30,
        "location": "Outpatient Haematology, Room 2",
    }
    fhir = {
        "resourceType": "Encounter",
        "id": "enc_3n7q0v",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/pt_8f2k1m"},
        "participant": [{"individual": {"reference": "Practitioner/prac_hvarga"}}],
        "type": [{"text": "follow-up"}],
        "period": {"start": "2026-03-02T07:15:00Z", "end": "2026-03-02T07:45:00Z"},
        "length": {"value": 30, "unit": "min"},
        "location": [{"location": {"display": "Outpatient Haematology, Room 2"}}],
    }
    api = make_api(Recorder(ok(flat), ok(fhir)))

    from_flat = api.get_encounter("enc_3n7q0v")
    from_fhir = api.get_encounter("enc_3n7q0v")

    assert from_flat == from_fhir
    assert from_flat.start_time == datetime(2026, 3, 2, 7, 15, tzinfo=UTC)
    assert (from_flat.encounter_class, from_flat.encounter_type) == ("AMB", "follow-up")
    assert (from_flat.practitioner_id, from_flat.length_minutes) == ("prac_hvarga", 30)


def test_specimens_read_the_same_from_flat_and_fhir_shapes():
    flat = {
        "id": "spec_b17c",
        "status": "available",
        "type": "blood",
        "patientId": "pt_8f2k1m",
        "collection": {"collectedDateTime": "2026-03-02T07:30:00Z"},
        "receivedTime": "2026-03-02T08:00:00Z",
        "note": "Haemolysed",
    }
    fhir = {
        "resourceType": "Specimen",
        "id": "spec_b17c",
        "status": "available",
        "type": {
            "coding": [{"system": "http://snomed.info/sct", "code": "119297000"}],
            "text": "blood",
        },
        "subject": {"reference": "Patient/pt_8f2k1m"},
        "collection": {"collectedDateTime": "2026-03-02T07:30:00Z"},
        "receivedTime": "2026-03-02T08:00:00Z",
        "note": [{"text": "Haemolysed"}],
    }
    api = make_api(Recorder(ok(flat), ok(fhir)))

    from_flat = api.get_specimen("spec_b17c")
    from_fhir = api.get_specimen("spec_b17c")

    assert from_flat == from_fhir
    assert from_flat.collected_at == datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
    assert from_flat.note == "Haemolysed"


def test_observation_searches_keep_only_the_requested_patient_and_category():
    rows: list[dict[str, Any]] = [
        {"id": "obs_a", "patientId": "pt_1", "category": "laboratory"},
        {"id": "obs_b", "patientId": "pt_1", "category": "vital-signs"},
        {"id": "obs_c", "subject": {"reference": "Patient/pt_2"}, "category": "laboratory"},
    ]
    recorder = Recorder(page(rows, None))
    api = make_api(recorder)

    result = api.search_observations(patient_id="pt_1", category="laboratory")

    assert [observation.id for observation in result.items] == ["obs_a"]
    assert dict(recorder.requests[0].url.params) == {
        "patientId": "pt_1",
        "category": "laboratory",
    }


def test_a_search_with_an_unsafe_patient_id_is_refused_before_sending():
    recorder = Recorder(page([], None))
    api = make_api(recorder)

    with pytest.raises(clinikapi.RequestRefused) as caught:
        api.search_encounters(patient_id="pt_1&patientId=pt_2")

    assert recorder.requests == []
    assert caught.value.issues[0].field == "patientId"


def test_a_stored_payload_with_date_times_is_serialised_in_utc():
    recorder = Recorder(ok(LAB))
    api = make_api(recorder)
    when = datetime(2026, 3, 3, 11, 0, tzinfo=timezone(timedelta(hours=2)))

    api.update_lab("lab_r4w9x2", {"effectiveDateTime": when})

    assert json.loads(recorder.requests[0].content) == {"effectiveDateTime": "2026-03-03T09:00:00Z"}


# --- against the in-process sandbox ----------------------------------------------------------


def sandbox_api(sandbox: Any) -> ClinikAPI:
    from reports.sandbox import SandboxConnectionDropped

    transport = clinikapi.SandboxTransport(sandbox, dropped=SandboxConnectionDropped)
    config = ClientConfig(clinikapi.SANDBOX_BASE_URL, KEY, transport=transport)
    delays: list[float] = []
    return ClinikAPI(config, sleep=delays.append, rng=random.Random(7))


def test_a_report_round_trips_through_the_sandbox_from_create_to_delete():
    from reports.sandbox import Sandbox, SandboxConfig

    api = sandbox_api(Sandbox(SandboxConfig()))
    lab = new_lab(
        patient_id="pt_8f2k1m0a4x7q",
        presented_form=(Attachment("application/pdf", "CBC", PDF_BASE64),),
    )

    created = api.create_lab(lab)
    read = api.get_lab(created.lab.id)
    amended = api.update_lab(created.lab.id, LabChanges(status="amended", conclusion="Revised."))
    listed = list(clinikapi.iter_all(api.search_labs, patient_id="pt_8f2k1m0a4x7q"))
    api.delete_lab(created.lab.id)

    assert created.meta.status == 201
    assert created.meta.request_id is not None
    assert read == created.lab
    assert read.presented_form == (Attachment("application/pdf", "CBC", PDF_BASE64),)
    assert (amended.lab.status, amended.lab.conclusion) == ("amended", "Revised.")
    assert created.lab.id in [item.id for item in listed]
    assert api.last_rate_limit is not None
    with pytest.raises(clinikapi.NotFound):
        api.get_lab(created.lab.id)


@pytest.mark.parametrize(
    ("kind", "cause"), [("drop", httpx.RemoteProtocolError), ("reset", httpx.ReadError)]
)
def test_a_connection_the_sandbox_drops_after_storing_leaves_the_outcome_unknown(kind, cause):
    from reports.sandbox import Fault, Sandbox, SandboxConfig

    sandbox = Sandbox(SandboxConfig())
    sandbox.faults.push(Fault(kind, route="POST /v1/labs", when="after"))
    api = sandbox_api(sandbox)

    with pytest.raises(clinikapi.OutcomeUnknown) as caught:
        api.create_lab(new_lab(patient_id="pt_8f2k1m0a4x7q"))

    assert isinstance(caught.value.__cause__, cause)
    stored = [lab for lab in sandbox.store.labs() if lab.get("patientId") == "pt_8f2k1m0a4x7q"]
    assert [lab["conclusion"] for lab in stored].count("Mild normocytic anaemia.") == 1


def test_the_sandbox_setting_builds_a_client_for_the_in_process_emulator(settings):
    settings.CLINIKAPI_BASE_URL = "sandbox"
    settings.CLINIKAPI_SECRET_KEY = KEY

    api = clinikapi.get_client()

    assert api.config.base_url == clinikapi.SANDBOX_BASE_URL
    assert isinstance(api.config.transport, clinikapi.SandboxTransport)
    assert api.health().is_ok
