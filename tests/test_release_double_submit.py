"""F6 / SUB-02: a double click on release and parallel POSTs of one form send one report.

The browser test double-clicks the real button in Chromium (a plain form really sends two POSTs);
the threaded test fires 10 POSTs carrying one token at once. Both then run the worker and count
the reports the sandbox really stored.
"""

from __future__ import annotations

import threading

import pytest
from django.test import Client
from django.urls import reverse
from playwright.sync_api import expect

from reports import outbox
from reports.models import Signature, Submission, SubmissionState
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.releasing import draft, drain, fast_release_settings, remote_reports_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(settings, api_over_socket):
    fast_release_settings(settings)
    return api_over_socket


def _send_everything(running, report) -> None:
    drain(
        outbox.Worker(name="double-submit"),
        until=lambda: not Submission.objects.waiting().exists(),
    )
    assert len(remote_reports_of(running.sandbox, report)) == 1


@pytest.mark.browser
def test_a_double_click_on_release_sends_one_report(
    page, live_server, clinician, sandbox, settings
):
    # A real password hash makes signing take a moment, as it does in production, so the
    # second click lands while the first POST is still being answered: two POSTs really leave.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    clinician.set_password(PASSWORD)
    clinician.save()
    report = draft(clinician)
    posts: list[str] = []
    page.on(
        "request",
        lambda request: (
            posts.append(request.url)
            if request.method == "POST" and request.url.endswith("/sign/")
            else None
        ),
    )
    sign_in(page, live_server.url, "clinician")
    page.goto(f"{live_server.url}{reverse('reports:sign', args=[report.pk])}")
    page.get_by_label("Your password").fill(PASSWORD)
    expect(page.get_by_role("button", name="Sign and release")).to_be_visible()
    # Two clicks 80 ms apart, the second while the first POST is still being answered.
    page.evaluate(
        """() => {
            const button = document.getElementById("sign-button");
            button.click();
            setTimeout(() => button.click(), 80);
        }"""
    )
    expect(page.locator("#report-state")).to_have_text("Being released")
    assert len(posts) == 2  # the browser really sent the form twice
    assert Signature.objects.count() == 1
    assert Submission.objects.count() == 1
    _send_everything(sandbox, report)
    page.reload()
    expect(page.locator("#report-state")).to_have_text("Released")


def test_ten_parallel_posts_of_one_form_make_one_outbox_row(clinician, sandbox):
    report = draft(clinician)
    setup = Client()
    setup.force_login(clinician)
    form = setup.get(reverse("reports:sign", args=[report.pk])).context["form"]
    data = {
        "password": PASSWORD,
        "version": form.initial["version"],
        "token": str(form.initial["token"]),
    }
    clients = []
    for _ in range(10):
        client = Client()
        client.force_login(clinician)
        clients.append(client)
    start = threading.Barrier(10, timeout=30)
    statuses: list[int] = []

    def post(client: Client) -> None:
        start.wait()
        statuses.append(client.post(reverse("reports:sign", args=[report.pk]), data).status_code)

    threads = [threading.Thread(target=post, args=[client], daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Every POST gets the first one's result: a redirect to where the release stands.
    assert statuses == [303] * 10
    assert Signature.objects.count() == 1
    assert Submission.objects.count() == 1
    assert Submission.objects.get().state == SubmissionState.PENDING
    _send_everything(sandbox, report)


def test_the_token_with_other_content_is_refused(clinician, sandbox):
    report = draft(clinician)
    client = Client()
    client.force_login(clinician)
    form = client.get(reverse("reports:sign", args=[report.pk])).context["form"]
    token = str(form.initial["token"])
    url = reverse("reports:sign", args=[report.pk])
    data = {"password": PASSWORD, "version": report.head, "token": token}
    assert client.post(url, data).status_code == 303
    refused = client.post(url, {**data, "version": report.head - 1})
    assert refused.status_code == 422
    assert Submission.objects.count() == 1
