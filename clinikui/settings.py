"""ClinikUI settings.

Every difference between machines comes from environment variables (listed with safe development
values in `.env.example`), read through the small typed helpers below, which refuse bad values
with `ImproperlyConfigured` at start-up rather than failing later on a page.

`CLINIKUI_ENVIRONMENT` says what kind of machine this is:

- `production` (the default, so a forgotten variable fails safe): `SECRET_KEY`,
  `ALLOWED_HOSTS`, `DATABASE_URL` and `CLINIKAPI_SECRET_KEY` are required and never defaulted,
  and the in-process sandbox is refused.
- `demo`: what the README's run command starts — SQLite and the in-process sandbox API.
- `development`: like demo, for people working on ClinikUI.
- `test`: the test suite.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

ENVIRONMENTS = ("production", "demo", "development", "test")


def env_str(name: str, default: str | None = None) -> str:
    """A string variable; without a default it is required."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ImproperlyConfigured(f"The environment variable {name} is required.")
    return default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {value!r}.") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


CLINIKUI_ENVIRONMENT = env_str("CLINIKUI_ENVIRONMENT", "production")
if CLINIKUI_ENVIRONMENT not in ENVIRONMENTS:
    raise ImproperlyConfigured(
        f"CLINIKUI_ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, "
        f"not {CLINIKUI_ENVIRONMENT!r}."
    )
IS_PRODUCTION = CLINIKUI_ENVIRONMENT == "production"

# Secrets have no production default: a missing one stops the server at start-up.
_DEV_SECRET_KEY = "django-insecure-clinikui-development-only-never-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", None if IS_PRODUCTION else _DEV_SECRET_KEY)

DEBUG = env_bool("DEBUG", False)
if DEBUG and IS_PRODUCTION:
    raise ImproperlyConfigured("DEBUG cannot be on in production.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if IS_PRODUCTION else ["127.0.0.1", "localhost"])
if IS_PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("The environment variable ALLOWED_HOSTS is required.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "crispy_forms",
    "crispy_bootstrap5",
    # Login throttling (RELIABILITY AC-05, SIG-01); its attempt table comes with its migrations.
    "axes",
    "reports",
    "terminology",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Pages are gzipped (28 KiB of composer HTML is 6 KiB on the wire); static files are not seen
    # here, WhiteNoise serves their precompressed copies. BREACH, which reads secrets from the size
    # of compressed pages reflecting an attacker's input, finds nothing to read: the CSRF token is
    # masked afresh in every response, this middleware pads each response with random bytes, the
    # session cookie is SameSite=Lax (another site cannot make the browser send the thousands of
    # signed-in requests it needs), and no page showing patient data echoes a GET parameter.
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The 15-minute idle expiry slides forward at most once a minute, not on every request.
    "reports.middleware.SessionRefreshMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A session ends 12 hours after sign-in however active it is (RELIABILITY SES-01); before the
    # next middleware, so an ended session is answered exactly like an idle one.
    "reports.middleware.SessionAbsoluteLimitMiddleware",
    # Every page needs a signed-in user unless its view says @login_not_required; htmx requests
    # of an ended session get 401 so the page can keep its text and sign in again in place.
    "reports.middleware.SessionAwareLoginRequiredMiddleware",
    # Dates in the clinician's own time zone, as the browser reports it.
    "reports.middleware.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: turns a refused sign-in or signing into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "clinikui.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "reports.context_processors.user_role",
                "reports.context_processors.release_queue",
                "reports.context_processors.notifications",
            ],
        },
    },
]

WSGI_APPLICATION = "clinikui.wsgi.application"

# SQLite is the embedded default; DATABASE_URL selects PostgreSQL (required in production).
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", None if IS_PRODUCTION else f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(env_float("DATABASE_CONN_MAX_AGE", 60)),
        conn_health_checks=True,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling with django-axes (RELIABILITY AC-05). Its backend only refuses locked-out
# credentials; ModelBackend still checks the password. Signing re-asks the password through
# authenticate(request, ...) (reports/workflow.py), so wrong signing passwords count too (SIG-01).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failures are counted per username, from whatever address. Not per IP: the clinicians of a ward
# share one PC and so one IP, and locking an address would lock the whole ward. Not per
# (username, IP) either: that count can never exceed the username's own, so adding it locks
# nobody sooner — and counting by username alone also stops guessing spread over many machines.
# A username that does not exist is counted and locked the same way, so the lockout page never
# tells whether an account exists.
AXES_LOCKOUT_PARAMETERS = ["username"]
# axes.W006 asks for the IP among the parameters, against attackers who rotate user agents or
# cookies to dodge a per-device count; a per-username count cannot be dodged that way.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_FAILURE_LIMIT = 5
# The lock lifts on its own 15 minutes after the last counted failure; attempts made while locked
# out (even with the right password) do not push that moment back, so a clinician who retries
# is not kept out longer, and neither is one whose name someone else keeps trying.
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Axes's log lines show these as asterisks, as it always does the password (RELIABILITY SEC-02);
# the same names are masked in the POST data it keeps with each attempt.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]
# Sign-ins and sign-outs are already in the audit trail (reports/signals.py); axes need not keep
# a second, unchained log of them.
AXES_DISABLE_ACCESS_LOG = True

# British English formats (day before month). The site is written in one language, so the
# translation machinery is off: with it on, every variable and `{% url %}` on a page asks it for
# the active language, about an eighth of a page's time (bench/RESULTS.md, B4).
LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic's target: always in production, where `manage.py collectstatic --noinput` runs
# before the server starts. With it, WhiteNoise serves the files collectstatic prepared once:
# content-hashed names browsers keep for a year, and gzip and Brotli copies (the composer's CSS
# and JavaScript are ~375 KiB as written, ~77 KiB gzipped), at no CPU cost per request.
# Elsewhere it is optional (the benchmarks set it to serve what production serves); without it
# the files come straight from the source folders, so a fresh clone needs no collectstatic.
STATIC_ROOT: Path | None = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
if not IS_PRODUCTION and "STATIC_ROOT" not in os.environ:
    STATIC_ROOT = None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if STATIC_ROOT is None
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = STATIC_ROOT is None

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# Sessions: 15 minutes idle, never past the browser's life. Activity slides the window, written
# at most once a minute (reports.middleware.SessionRefreshMiddleware), not on every request.
SESSION_COOKIE_AGE = 15 * 60
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# However active, a session ends this long after its sign-in (RELIABILITY SES-01: 12 hours;
# reports.middleware.SessionAbsoluteLimitMiddleware).
CLINIKUI_SESSION_MAX_AGE = int(env_float("CLINIKUI_SESSION_MAX_AGE", 12 * 60 * 60, minimum=60))
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# A refused form is audited (RELIABILITY AU-05) and explained; nothing it carried is kept.
CSRF_FAILURE_VIEW = "reports.views.csrf_failure"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if IS_PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31_536_000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# A strict Content Security Policy: scripts only from our origin or with the per-request nonce,
# and the browser can talk to nobody but ClinikUI (never to ClinikAPI).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
}

# ClinikAPI. The key lives only here on the server: never in a page, a URL or a log line.
# CLINIKAPI_BASE_URL=sandbox mounts the sandbox emulator in-process (no key, no second process).
CLINIKAPI_SANDBOX = "sandbox"
CLINIKAPI_BASE_URL = env_str("CLINIKAPI_BASE_URL", "https://api.clinikapi.com").rstrip("/")
if IS_PRODUCTION and CLINIKAPI_BASE_URL == CLINIKAPI_SANDBOX:
    raise ImproperlyConfigured("The in-process sandbox cannot be used in production.")
_SANDBOX_KEY = "clk_test_clinikuisandbox"
CLINIKAPI_SECRET_KEY = env_str(
    "CLINIKAPI_SECRET_KEY",
    None if IS_PRODUCTION else (_SANDBOX_KEY if CLINIKAPI_BASE_URL == CLINIKAPI_SANDBOX else ""),
)
# The overall deadline of one API call; the per-phase timeouts sit inside it (RELIABILITY SUB-09).
CLINIKAPI_TIMEOUT = env_float("CLINIKAPI_TIMEOUT", 30.0, minimum=0.1)
CLINIKAPI_CONNECT_TIMEOUT = env_float("CLINIKAPI_CONNECT_TIMEOUT", 3.0, minimum=0.1)
CLINIKAPI_READ_TIMEOUT = env_float("CLINIKAPI_READ_TIMEOUT", 15.0, minimum=0.1)
CLINIKAPI_WRITE_TIMEOUT = env_float("CLINIKAPI_WRITE_TIMEOUT", 15.0, minimum=0.1)
CLINIKAPI_POOL_TIMEOUT = env_float("CLINIKAPI_POOL_TIMEOUT", 5.0, minimum=0.1)
# Reads (never writes) are retried this many times, and never wait longer than this for one retry.
CLINIKAPI_MAX_RETRIES = int(env_float("CLINIKAPI_MAX_RETRIES", 2))
CLINIKAPI_MAX_RETRY_WAIT = env_float("CLINIKAPI_MAX_RETRY_WAIT", 10.0)
# Eventual-consistency lag of the in-process sandbox's searches (CONTRACT §6); off for the demo.
CLINIKAPI_SANDBOX_SEARCH_LAG = env_float("CLINIKAPI_SANDBOX_SEARCH_LAG", 0.0)

# Releasing (reports/workflow.py, reports/outbox.py).
# A report with status `final` waits for a supervisor's verification first when this is on;
# `registered`, `partial` and `preliminary` reports are released when their author signs.
CLINIKUI_REVIEW_REQUIRED = env_bool("CLINIKUI_REVIEW_REQUIRED", True)
# How many different supervisors must verify a report before it is released (never its author).
CLINIKUI_VERIFIERS_REQUIRED = int(env_float("CLINIKUI_VERIFIERS_REQUIRED", 1, minimum=1))
# An amendment of a released report (amended, corrected, appended) is verified before its PATCH
# when this is on; a cancellation never waits (it is signed with the password and sent).
CLINIKUI_AMENDMENTS_NEED_REVIEW = env_bool("CLINIKUI_AMENDMENTS_NEED_REVIEW", True)
# After an unknown outcome the worker searches ClinikAPI this long after the attempt, and again
# after the second delay, before it sends again (RELIABILITY SUB-05: ≥ 30 s and 120 s, well
# beyond ClinikAPI's ~10 s search lag).
CLINIKUI_RECONCILE_FIRST_CHECK = env_float("CLINIKUI_RECONCILE_FIRST_CHECK", 30.0, minimum=0.0)
CLINIKUI_RECONCILE_SECOND_CHECK = env_float("CLINIKUI_RECONCILE_SECOND_CHECK", 120.0, minimum=0.0)
# How long a worker holds a submission before another may take it over (SUB-10).
CLINIKUI_WORKER_LEASE = env_float("CLINIKUI_WORKER_LEASE", 60.0, minimum=1.0)
# Circuit breaker (SUB-08): open after this many failures in a row, probe again after the pause.
CLINIKUI_BREAKER_THRESHOLD = int(env_float("CLINIKUI_BREAKER_THRESHOLD", 5, minimum=1))
CLINIKUI_BREAKER_COOLDOWN = env_float("CLINIKUI_BREAKER_COOLDOWN", 30.0, minimum=0.0)
# Share of ClinikAPI's per-minute limit the workers allow themselves (SUB-07).
CLINIKUI_RATE_BUDGET = env_float("CLINIKUI_RATE_BUDGET", 0.8, minimum=0.01)
# Test-only: the worker exits hard at this named point (RELIABILITY 4.1 crash points).
CLINIKUI_WORKER_CRASH_POINT = env_str("CLINIKUI_WORKER_CRASH_POINT", "")
if CLINIKUI_WORKER_CRASH_POINT and CLINIKUI_ENVIRONMENT != "test":
    raise ImproperlyConfigured("CLINIKUI_WORKER_CRASH_POINT is for the test suite only.")

# SQLite: a transaction that will write takes the write lock when it begins, so concurrent
# writers (web requests, the release worker) wait their turn instead of failing with "database
# is locked" when a reader tries to become a writer.
# Write-ahead logging lets pages read while the worker writes, and with synchronous=NORMAL a
# commit costs no fsync of its own (WAL is synced at checkpoints): a crash of ClinikUI loses
# nothing committed; a power cut can lose the last moments, which is why production runs on
# PostgreSQL.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    sqlite_options.setdefault("transaction_mode", "IMMEDIATE")
    sqlite_options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")

# The test suite's SQLite database is a file, not memory: the release worker's crash tests run
# the worker as a separate process on it. One file per test run, so runs never share one.
if CLINIKUI_ENVIRONMENT == "test" and DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"clinikui-test-{os.getpid()}.sqlite3")
    }

# Error reports (emails to admins, logs) mask key-shaped strings in traceback variables too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "reports.redaction.RedactingExceptionReporterFilter"

# Who is mailed an alert (a refused API key, an exhausted quota, a report held twice, a read-back
# that differs), and through which mail server. Alerts are also logged at ERROR and listed in
# the admin, so a missing mail server loses no alert.
ADMINS = env_list("ADMINS", [])
SERVER_EMAIL = env_str("SERVER_EMAIL", "clinikui@localhost")
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": env_str("EMAIL_HOST", "localhost"),
            "port": int(env_float("EMAIL_PORT", 25, minimum=1)),
            "username": env_str("EMAIL_HOST_USER", ""),
            "password": env_str("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            "timeout": 10,
        },
    }
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        # A second line of defence behind never logging the key at all (RELIABILITY SEC-02).
        "redact_api_keys": {"()": "reports.redaction.RedactAPIKeys"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_api_keys"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # httpx and httpcore log every request line at DEBUG/INFO; our client logs what matters.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "pikepdf": {"level": "WARNING"},
        # django-axes logs every sign-in at INFO ("Deleted 0 failed login attempts"); our audit
        # trail records sign-ins and failures, and its lockout warnings still come through.
        "axes": {"level": "WARNING"},
        # At DEBUG the template engine logs every failed variable lookup with the whole template
        # context: patient names, conclusions, results and the CSRF token would reach the logs
        # whenever LOG_LEVEL=DEBUG (RELIABILITY SEC-02; found by bench/security.py's canary).
        "django.template": {"level": "INFO"},
    },
}
