"""The ClinikAPI key stays on the server (RELIABILITY SEC-01, SEC-02).

Every test of the suite runs under the leak watch in conftest.py, with a canary key configured:
a test during which the key reaches a log record, a page or an email fails. The tests here prove
that the watch and the redaction behind it work, so that a green suite means something.
"""

from __future__ import annotations

import logging
import sys

import pytest
from django.conf import settings
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from reports import clinikapi
from reports.redaction import redact_secrets
from tests.conftest import _LeakWatch

CANARY = "clk_test_CanaryForThisTestOnly42"


def test_the_suite_runs_with_a_canary_key():
    assert settings.CLINIKAPI_SECRET_KEY.startswith("clk_test_Canary")


def test_the_leak_watch_catches_a_key_in_a_log_record():
    watch = _LeakWatch()
    logger = logging.getLogger("tests.leak_probe")
    logger.propagate = False
    logger.addHandler(watch.records)
    try:
        logger.error("calling with key %s", CANARY)
    finally:
        logger.removeHandler(watch.records)

    assert watch.leaks(CANARY) == [f"log record: {'calling with key ' + CANARY!r}"]


def test_the_leak_watch_catches_a_key_shaped_string_in_a_page():
    watch = _LeakWatch()
    watch.bodies.append(("/somewhere/", b"<p>clk_live_SomeOtherKey9</p>"))

    assert watch.leaks(CANARY) == ["response body of /somewhere/"]


@pytest.mark.django_db
def test_error_reports_mask_the_key_in_settings_and_local_variables(rf: RequestFactory):
    headers = {"x-api-key": settings.CLINIKAPI_SECRET_KEY}  # as a library might hold it
    try:
        raise ValueError("an unexpected failure while calling ClinikAPI")
    except ValueError:
        reporter = ExceptionReporter(rf.get("/patients/"), *sys.exc_info())
        text = reporter.get_traceback_text()
        html = reporter.get_traceback_html()

    assert headers["x-api-key"] not in text
    assert headers["x-api-key"] not in html
    assert "clk_test_[redacted]" in html  # the variable is listed, masked


def test_client_configuration_and_errors_never_show_the_key():
    config = clinikapi.ClientConfig.from_settings()
    error = clinikapi.NotFound("Not Found", status=404, request_id="req_12345678")

    shown = " ".join([repr(config), str(config), repr(error), str(error)])

    assert settings.CLINIKAPI_SECRET_KEY not in shown


def test_redact_masks_live_and_test_keys_only():
    text = "a clk_live_Abc123 b clk_test_Z9 c clk_other_x"

    assert redact_secrets(text) == "a clk_live_[redacted] b clk_test_[redacted] c clk_other_x"
