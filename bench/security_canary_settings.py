"""ClinikUI's own settings at LOG_LEVEL=DEBUG, with the library loggers it quiets for noise raised
to DEBUG too, for the canary run of bench/security.py.

httpx, httpcore, pikepdf and django-axes are kept at WARNING by the application because they are
chatty; a leak scan must read what they say at their most verbose (the HTTP client's own request
lines and connection steps among them). `django.template` is kept at INFO for privacy, not noise
(its DEBUG lines carry whole template contexts): an operator's LOG_LEVEL=DEBUG leaves it at INFO,
and so does this module.
"""

from __future__ import annotations

from clinikui import settings as _base
from clinikui.settings import *  # noqa: F403

_NOISY = ("httpx", "httpcore", "pikepdf", "axes")

LOGGING = {
    **_base.LOGGING,
    "root": {**_base.LOGGING["root"], "level": "DEBUG"},
    "loggers": {**_base.LOGGING["loggers"], **{name: {"level": "DEBUG"} for name in _NOISY}},
}
