"""The roles of ClinikUI and the permissions each one grants.

A role is a Django group; admins are staff users and need no group. The migration
`0002_create_roles` applies this table, and `ensure_roles()` re-applies it after a change.
"""

from __future__ import annotations

from typing import Final

from django.contrib.auth.models import (
    AbstractBaseUser,
    AnonymousUser,
    Group,
    Permission,
    PermissionsMixin,
)

CLINICIAN: Final = "Clinician"
SUPERVISOR: Final = "Supervisor"

ROLE_PERMISSIONS: Final[dict[str, tuple[str, ...]]] = {
    CLINICIAN: ("lookup_patients", "compose_report"),
    SUPERVISOR: ("lookup_patients", "verify_report"),
}


def ensure_roles() -> None:
    """Create the role groups and give each exactly the permissions of ROLE_PERMISSIONS."""
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="reports", codename__in=codenames)
        )


def role_name(user: AbstractBaseUser | AnonymousUser) -> str:
    """The role to show beside a user's name: Admin, Supervisor, Clinician or no role."""
    if not user.is_authenticated:
        return ""
    if getattr(user, "is_staff", False):
        return "Admin"
    if not isinstance(user, PermissionsMixin):
        return "No role"
    names = set(user.groups.values_list("name", flat=True))
    for role in (SUPERVISOR, CLINICIAN):
        if role in names:
            return role
    return "No role"
