"""The roles of ClinikUI and the permissions each one grants.

A role is a Django group; admins are staff users and need no group. The migration
`0002_create_roles` applies this table, and `ensure_roles()` re-applies it after a change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar

from django.contrib.auth.models import (
    AbstractBaseUser,
    AnonymousUser,
    Group,
    Permission,
)
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponseBase

_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])

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
    """The role to show beside a user's name: Admin, Supervisor, Clinician or no role.

    Named from what the user's roles grant (ROLE_PERMISSIONS), which every page reads anyway,
    so the badge costs no query of its own."""
    if not user.is_authenticated:
        return ""
    if getattr(user, "is_staff", False):
        return "Admin"
    granted = role_permissions(user)
    for role in (SUPERVISOR, CLINICIAN):
        if granted.issuperset(ROLE_PERMISSIONS[role]):
            return role
    return "No role"


_CACHE_ATTRIBUTE = "_clinikui_role_permissions"


def role_permissions(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The product's permissions (codenames) the user holds through their roles.

    Never through superuser status: Django lets a superuser do anything, but an administrator
    runs ClinikUI and is no clinician or supervisor (DESIGN "Roles": the admin is for operations,
    never for clinical edits). Read once per user object, so once per request.
    """
    if not user.is_authenticated or not getattr(user, "is_active", False):
        return frozenset()
    cached: frozenset[str] | None = getattr(user, _CACHE_ATTRIBUTE, None)
    if cached is None:
        cached = frozenset(
            Permission.objects.filter(
                Q(group__user=user) | Q(user=user), content_type__app_label="reports"
            ).values_list("codename", flat=True)
        )
        setattr(user, _CACHE_ATTRIBUTE, cached)
    return cached


def has_role_permission(user: AbstractBaseUser | AnonymousUser, codename: str) -> bool:
    return codename in role_permissions(user)


def role_required(codename: str) -> Callable[[_View], _View]:
    """Like `permission_required(..., raise_exception=True)`, from roles only (see above)."""

    def decorator(view: _View) -> _View:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not has_role_permission(request.user, codename):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator
