"""Signing in and out, roles as groups, and the demo users."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.urls import reverse

from reports.roles import ROLE_PERMISSIONS

pytestmark = pytest.mark.django_db


def test_login_page_is_served_to_anonymous_users(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert 'name="username"' in response.content.decode()


def test_signing_in_lands_on_patient_search_with_name_and_role(client, clinician):
    response = client.post(
        reverse("login"),
        {"username": "clinician", "password": "correct horse battery staple"},
        follow=True,
    )

    page = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("reports:patient_search")
    assert "Clinician Tester" in page
    assert '<span class="badge text-bg-light" id="signed-in-role">Clinician</span>' in page


def test_a_wrong_password_is_refused_without_saying_whether_the_user_exists(client, clinician):
    wrong_password = client.post(reverse("login"), {"username": "clinician", "password": "nope"})
    no_such_user = client.post(reverse("login"), {"username": "nobody", "password": "nope"})

    assert wrong_password.status_code == no_such_user.status_code == 200
    assert wrong_password.context["form"].errors == no_such_user.context["form"].errors


def test_signing_out_needs_a_post_and_ends_the_session(client, clinician):
    client.force_login(clinician)

    assert client.get(reverse("logout")).status_code == 405
    client.post(reverse("logout"))

    assert client.get(reverse("reports:patient_search")).status_code == 302


def test_roles_are_groups_with_exactly_their_permissions():
    for role, codenames in ROLE_PERMISSIONS.items():
        granted = set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

        assert granted == set(codenames)


def test_clinicians_compose_and_supervisors_verify(clinician, supervisor):
    assert clinician.has_perm("reports.compose_report")
    assert not clinician.has_perm("reports.verify_report")
    assert supervisor.has_perm("reports.verify_report")
    assert not supervisor.has_perm("reports.compose_report")


def test_admins_are_shown_as_admin(client, admin_user):
    client.force_login(admin_user)

    page = client.get(reverse("home"), follow=True).content.decode()

    assert 'id="signed-in-role">Admin<' in page


def test_demo_users_command_creates_two_clinicians_and_a_supervisor(capsys):
    call_command("create_demo_users")
    call_command("create_demo_users")  # running it again resets, never duplicates

    roles = {u.username: [g.name for g in u.groups.all()] for u in User.objects.all()}
    assert roles == {
        "clinician": ["Clinician"],
        "clinician2": ["Clinician"],
        "supervisor": ["Supervisor"],
    }
    assert User.objects.get(username="supervisor").check_password("clinikui-demo")
    assert "supervisor" in capsys.readouterr().out


def test_demo_users_command_is_refused_in_production(settings):
    settings.IS_PRODUCTION = True

    with pytest.raises(CommandError, match="never created in production"):
        call_command("create_demo_users")
    assert not User.objects.exists()
