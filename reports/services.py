"""What a clinician can do. Views call these; these call ClinikAPI and our models."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime

from reports import clinikapi

logger = logging.getLogger(__name__)

# How many rows a look-up page shows at most; a longer list means the search was too broad.
PATIENT_SEARCH_LIMIT = 50
CHART_ROWS_LIMIT = 500


class APIUnavailable(Exception):
    """ClinikAPI could not answer; the message is fit for a clinician, with a reference."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class PatientNotFound(Exception):
    """ClinikAPI has no patient with this id (or it belongs to another organisation)."""


@dataclass(frozen=True, slots=True)
class PatientSearchResult:
    patients: tuple[clinikapi.Patient, ...]
    is_truncated: bool


@dataclass(frozen=True, slots=True)
class PatientChart:
    """One patient with their encounters (newest first) and observations (newest first)."""

    patient: clinikapi.Patient
    encounters: tuple[clinikapi.Encounter, ...]
    observations: tuple[clinikapi.Observation, ...]

    @property
    def critical_count(self) -> int:
        return sum(1 for observation in self.observations if observation.is_critical)


def find_patients(*, name: str = "", birth_date: date | None = None) -> PatientSearchResult:
    """Patients whose first or last name contains `name` and who were born on `birth_date`.

    Raises APIUnavailable.
    """
    with _api_errors():
        found = list(
            clinikapi.iter_all(
                get_api().search_patients,
                limit=PATIENT_SEARCH_LIMIT + 1,
                name=name or None,
                birth_date=birth_date,
            )
        )
    found.sort(key=lambda patient: (patient.last_name.casefold(), patient.first_name.casefold()))
    return PatientSearchResult(
        patients=tuple(found[:PATIENT_SEARCH_LIMIT]),
        is_truncated=len(found) > PATIENT_SEARCH_LIMIT,
    )


def get_patient_chart(*, patient_id: str) -> PatientChart:
    """The patient with their encounters and observations, read-only.

    Raises PatientNotFound, APIUnavailable.
    """
    api = get_api()
    with _api_errors():
        try:
            patient = api.get_patient(patient_id)
        except clinikapi.NotFound as exc:
            raise PatientNotFound(f"No patient with id {patient_id} was found.") from exc
        except clinikapi.RequestRefused as exc:
            raise PatientNotFound(f"No patient with id {patient_id} was found.") from exc
        encounters = list(
            clinikapi.iter_all(
                api.search_encounters,
                limit=CHART_ROWS_LIMIT,
                patient_id=patient.id,
                sort="-date",
            )
        )
        observations = list(
            clinikapi.iter_all(
                api.search_observations,
                limit=CHART_ROWS_LIMIT,
                patient_id=patient.id,
                sort="-date",
            )
        )
    # Search order is the API's business; ours is newest first whatever it sends.
    encounters.sort(key=lambda e: e.start_time or _EPOCH, reverse=True)
    observations.sort(key=lambda o: o.effective_time or _EPOCH, reverse=True)
    return PatientChart(
        patient=patient, encounters=tuple(encounters), observations=tuple(observations)
    )


def get_api() -> clinikapi.ClinikAPI:
    """The process-wide API client; raises APIUnavailable when it is misconfigured."""
    try:
        return clinikapi.get_client()
    except clinikapi.Misconfigured as exc:
        logger.error("ClinikAPI client is misconfigured: %s", exc.code or "see settings")
        raise APIUnavailable(
            "ClinikAPI is not configured correctly on this server. An administrator has to "
            "check its address and key."
        ) from exc


# Sorts undated rows last.
_EPOCH = datetime.min.replace(tzinfo=UTC)


@contextmanager
def _api_errors() -> Iterator[None]:
    """Turns the client's failures into APIUnavailable with a message fit for a clinician."""
    try:
        yield
    except (clinikapi.NotFound, clinikapi.RequestRefused):
        raise
    except clinikapi.ClinikAPIError as exc:
        logger.warning(
            "ClinikAPI call failed: %s (request id %s)", type(exc).__name__, exc.request_id or "-"
        )
        raise APIUnavailable(_explain(exc), request_id=exc.request_id) from exc


def _explain(exc: clinikapi.ClinikAPIError) -> str:
    if isinstance(exc, clinikapi.Unauthorized | clinikapi.Forbidden | clinikapi.Misconfigured):
        return (
            "ClinikAPI refused ClinikUI's credentials. An administrator has to check the "
            "API key; nothing you entered was lost."
        )
    if isinstance(exc, clinikapi.QuotaExceeded):
        return (
            "ClinikUI has used up its ClinikAPI quota for this month. Look-ups will work "
            "again when the quota resets; an administrator can raise it."
        )
    if isinstance(exc, clinikapi.RateLimited):
        return "ClinikAPI is busy right now. Try again in a minute."
    return (
        "ClinikAPI cannot be reached right now. Try again in a moment; the rest of "
        "ClinikUI keeps working."
    )
