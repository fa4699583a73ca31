from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from reports.roles import role_name


def user_role(request: HttpRequest) -> dict[str, object]:
    """The signed-in user's role for the navigation bar, looked up only if a page shows it."""
    return {"user_role": SimpleLazyObject(lambda: role_name(request.user))}
