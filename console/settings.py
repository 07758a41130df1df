"""Settings for the support console.

Everything comes from environment variables. The defaults run the local demo
(SQLite under var/, loopback only); production sets DATABASE_URL, SECRET_KEY,
ALLOWED_HOSTS and CONSOLE_ENCRYPTION_KEYS explicitly (see README).
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CONSOLE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


#: The settings whose secret came from a file generated under var/, not from
#: the environment: `check --deploy` refuses them (console/checks.py), since
#: losing var/ would sign everyone out and leave every stored API key unreadable.
GENERATED_SECRETS: list[str] = []


def local_secret(setting: str, filename: str, make) -> str:
    """A secret kept in an untracked file under var/, made on first use.

    Only for the demo and development: production passes the value in the
    environment so that it never lives next to the code.
    """
    GENERATED_SECRETS.append(setting)
    path = VAR_DIR / filename
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or local_secret(
    "SECRET_KEY", "secret_key", lambda: secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# Newest key first; older keys stay readable until `rotate_encryption_keys`
# has re-encrypted everything with the newest one.
CONSOLE_ENCRYPTION_KEYS = env_list("CONSOLE_ENCRYPTION_KEYS", "") or [
    local_secret(
        "CONSOLE_ENCRYPTION_KEYS", "encryption_key", lambda: Fernet.generate_key().decode()
    )
]

# Plain http to a loopback address is only for the simulator: the demo and the
# tests turn this on; production leaves it off.
SKYVERN_ALLOW_LOOPBACK = env_bool("SKYVERN_ALLOW_LOOPBACK", False)
# A connection's host must resolve to public addresses only (checked when it is
# saved and again before every connection is opened). Only whoever deploys the
# console can allow private, link-local and shared addresses, for a Skyvern
# inside the same network; cloud-metadata addresses are refused regardless.
SKYVERN_ALLOW_PRIVATE_HOSTS = env_bool("SKYVERN_ALLOW_PRIVATE_HOSTS", False)
SKYVERN_CONNECT_TIMEOUT = float(os.environ.get("SKYVERN_CONNECT_TIMEOUT", "3.05"))
SKYVERN_READ_TIMEOUT = float(os.environ.get("SKYVERN_READ_TIMEOUT", "20"))
# How often the worker brings every team's cached runs in line with Skyvern.
SYNC_INTERVAL_SECONDS = int(os.environ.get("SYNC_INTERVAL_SECONDS", "180"))
# A periodic sync round that shows no progress (no connection done) for this
# long is taken for dead (its worker was killed) and the next round is booked.
SYNC_ROUND_STALE_SECONDS = int(os.environ.get("SYNC_ROUND_STALE_SECONDS", "300"))
# How often an open runs page asks for new runs and fresh status counts.
RUNS_PAGE_POLL_SECONDS = int(os.environ.get("RUNS_PAGE_POLL_SECONDS", "10"))
# Largest Skyvern webhook body accepted (bytes); bigger deliveries get 413.
WEBHOOK_MAX_BODY_BYTES = int(os.environ.get("WEBHOOK_MAX_BODY_BYTES", str(1024 * 1024)))
# Bulk retry throttle, per Skyvern connection and shared by every job and worker
# (each connection may override both in its ConnectionThrottle row).
BULK_RETRY_MAX_IN_FLIGHT = int(os.environ.get("BULK_RETRY_MAX_IN_FLIGHT", "4"))
BULK_RETRY_PER_SECOND = float(os.environ.get("BULK_RETRY_PER_SECOND", "2"))
# Sending threads per bulk worker task (a connection's in-flight cap still applies).
BULK_RETRY_WORKER_THREADS = int(os.environ.get("BULK_RETRY_WORKER_THREADS", "4"))
# Automatic re-sends of one item (429, 503 + Retry-After, refused connection) before it fails.
BULK_RETRY_MAX_ATTEMPTS = int(os.environ.get("BULK_RETRY_MAX_ATTEMPTS", "20"))
# A bulk job's retries are followed until their new runs end: Skyvern is asked
# about the unfinished ones this often, for at most this long after sending ends
# (runs still going then are reported "still running").
BULK_RETRY_FOLLOW_EVERY_SECONDS = int(os.environ.get("BULK_RETRY_FOLLOW_EVERY_SECONDS", "10"))
BULK_RETRY_FOLLOW_LIMIT_SECONDS = int(os.environ.get("BULK_RETRY_FOLLOW_LIMIT_SECONDS", "21600"))
# The canary: a job sending more runs than this sends a few first and waits
# for their outcomes (at most BULK_RETRY_CANARY_WAIT_SECONDS); it goes on, and
# keeps going, only while at least BULK_RETRY_MIN_SUCCESS_PERCENT of them (then
# of its last BULK_RETRY_WATCH_WINDOW finished retries) succeed. The first and
# the percentage are each job's choice on the preview.
BULK_RETRY_CANARY_OVER = int(os.environ.get("BULK_RETRY_CANARY_OVER", "20"))
BULK_RETRY_CANARY_WAIT_SECONDS = int(os.environ.get("BULK_RETRY_CANARY_WAIT_SECONDS", "600"))
BULK_RETRY_MIN_SUCCESS_PERCENT = int(os.environ.get("BULK_RETRY_MIN_SUCCESS_PERCENT", "60"))
BULK_RETRY_WATCH_WINDOW = int(os.environ.get("BULK_RETRY_WATCH_WINDOW", "10"))

INSTALLED_APPS = [
    "console",  # the project's own system checks (console/checks.py)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    # Before django_tasks_db: its `db_worker` command replaces that one.
    "console.background",
    "django_tasks_db",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "console.teams",
    "console.runs",
    "console.sync",
    "console.bulk",
    "console.incidents",
    "console.audit",
    "console.demo",
    "console.twofactor",
    "console.operations",
    "console.oidc",
]

MIDDLEWARE = [
    "console.middleware.StripNulFromHeaders",
    # /healthz, /readyz and /metrics: before the https redirect, the host
    # check, sessions and sign-in (console/operations/middleware.py).
    "console.operations.middleware.OperationsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "console.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Signed in with a password only: the code page (or, where two-factor is
    # mandatory, the enrolment page) until the second step is done.
    "console.twofactor.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # The person's own time zone for what they read and type (account page).
    "console.teams.timezones.TimeZoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "console.bulk.middleware.FinishedJobsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.teams.context_processors.teams",
                "console.theme.theme",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'console.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Connections are kept (conn_max_age above) on SQLite too, so that a
    # request doesn't pay for opening one, running its pragmas and registering
    # Django's SQL functions (docs/performance.md, change 12). runserver and
    # db_worker close theirs themselves.
    # The web server and the worker write to the same file: take the write
    # lock up front and wait for it rather than failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that tests with several threads share one database.
    # One file per test process, so that two test runs on a machine don't collide.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-console-{os.getpid()}.sqlite3")}
else:
    # One test database per test process on a shared server too: two runs
    # (CI beside a developer, two checkouts) never drop each other's tables.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}

# The small queries every page asks are prepared once per PostgreSQL
# connection (console/compiled.py). Off for a connection pooler in
# transaction mode that can't keep prepared statements (PgBouncer < 1.21).
DATABASE_PREPARED = os.environ.get("DATABASE_PREPARED", "1") != "0"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Rendered run cards, keyed by what they show (console/runs/cards.py), so
    # a per-process cache is never stale; ~3 KB a card, 100 full pages' worth.
    "run_cards": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "run-cards",
        "TIMEOUT": 24 * 3600,
        "OPTIONS": {"MAX_ENTRIES": 5000},
    },
}

TASKS = {
    "default": {
        "BACKEND": os.environ.get("TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
        "QUEUES": ["default"],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out sign-in before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Does nothing unless OIDC_ISSUER and OIDC_CLIENT_ID are set (below).
    "console.oidc.backends.OidcBackend",
]
# Failed sign-ins are counted per username *and* address: someone guessing one
# account's password from one address locks only that pair, so neither an
# attacker elsewhere nor a colleague in the same office is locked out with it.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "console.logins.lockout_response"  # 429, the console's own page
# Behind N reverse proxies, the client's address is read from X-Forwarded-For
# as the last of them saw it (console/logins.py); 0: REMOTE_ADDR.
CONSOLE_PROXY_COUNT = int(os.environ.get("CONSOLE_PROXY_COUNT", "0"))
AXES_CLIENT_IP_CALLABLE = "console.logins.client_ip"
AXES_WHITELIST_CALLABLE = "console.logins.not_a_password_attempt"

# Two-factor sign-in (TOTP, django-otp): optional for everyone; with this on,
# superusers and team admins must set it up before they can use the console.
TWO_FACTOR_REQUIRED_FOR_ADMINS = env_bool("TWO_FACTOR_REQUIRED_FOR_ADMINS", False)
# Wrong codes in a row on the code page before the person is signed out.
TWO_FACTOR_CODE_FAILURE_LIMIT = 5
OTP_TOTP_ISSUER = "Skyvern support console"
# The Django admin may list and delete devices (a lost phone) but never shows a key.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Sign-in with the company's identity provider (OpenID Connect, through
# mozilla-django-oidc), beside passwords: on when OIDC_ISSUER and
# OIDC_CLIENT_ID are set. docs/sign-in-with-oidc.md says what each one does.
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "")
OIDC_PROVIDER_NAME = os.environ.get("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET", "")
# Each one read from the issuer's discovery document unless given here.
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_USERINFO_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_JWKS_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_SCOPES", "openid email profile")
OIDC_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM", "groups")
# Empty: any email the provider vouches for (check --deploy warns).
OIDC_ALLOWED_EMAIL_DOMAINS = [
    domain.lower().lstrip("@") for domain in env_list("OIDC_ALLOWED_EMAIL_DOMAINS", "")
]
# "group:team:role,…": the provider's groups decide the roles in the teams named here.
OIDC_GROUP_ROLES = os.environ.get("OIDC_GROUP_ROLES", "")
# Off: a sign-in through the provider skips the console's own two-factor code
# (the provider's sign-in, with its MFA, is the second factor). On: it asks
# for the code like a password sign-in does.
OIDC_CONSOLE_TWO_FACTOR = env_bool("OIDC_CONSOLE_TWO_FACTOR", False)
OIDC_BACKEND = "console.oidc.backends.OidcBackend"
OIDC_USE_PKCE = True
OIDC_TIMEOUT = float(os.environ.get("OIDC_TIMEOUT_SECONDS", "10"))
OIDC_VERIFY_SSL = True
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc:callback"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where `collectstatic` writes and whitenoise serves from (made here so that
# whitenoise finds it). The demo's is under var/; production names its own
# directory, outside the checkout (`check --deploy` warns otherwise).
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or VAR_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# The demo and the tests serve static/ as it is. A production install serves
# only what collectstatic put in its STATIC_ROOT: the compressed copies, and
# never a file changed in the checkout before the server was reloaded.
WHITENOISE_USE_FINDERS = not os.environ.get("STATIC_ROOT")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Vendored files carry their version in the name, so no manifest is needed.
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
CSRF_FAILURE_VIEW = "console.errors.csrf_failure"

# A sign-in lasts at most SESSION_HOURS (counted from the sign-in, or from the
# last change to the session), and ends when the browser closes.
SESSION_COOKIE_AGE = int(float(os.environ.get("SESSION_HOURS", "8")) * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", True)

# CONSOLE_HTTPS=1 in production (see README): the console is reached only over
# https, so cookies are https-only and browsers are told to never use http.
# Off by default so that the local demo works on http://127.0.0.1:8000.
CONSOLE_HTTPS = env_bool("CONSOLE_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", CONSOLE_HTTPS)
SESSION_COOKIE_SECURE = CONSOLE_HTTPS
CSRF_COOKIE_SECURE = CONSOLE_HTTPS
SECURE_HSTS_SECONDS = int(
    os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600) if CONSOLE_HTTPS else "0")
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", CONSOLE_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", CONSOLE_HTTPS)
# Behind a TLS-terminating proxy: the header it sets on https requests, e.g.
# CONSOLE_PROXY_SSL_HEADER=X-Forwarded-Proto (the proxy must overwrite it).
if os.environ.get("CONSOLE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + os.environ["CONSOLE_PROXY_SSL_HEADER"].upper().replace("-", "_"),
        "https",
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Content-Security-Policy: nothing inline, nothing evaluated (htmx runs with
# allowEval off and without its indicator <style>, see base.html). Screenshots
# and recordings come from Skyvern's hosts over https; Pico CSS draws its
# icons as data: images. Where SKYVERN_ALLOW_LOOPBACK is on (the demo's
# simulator), console/csp.py adds the plain-http loopback origins to img-src
# and media-src.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "https:", "data:"],
    "media-src": [CSP.SELF, "https:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "frame-src": [CSP.NONE],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# Operations (console/operations/): /readyz answers 503 unless a db_worker
# showed a sign of life within this many seconds (0: no worker needed);
# /metrics needs `Authorization: Bearer <METRICS_TOKEN>` (unset: loopback only).
READY_WORKER_SECONDS = int(os.environ.get("READY_WORKER_SECONDS", "120"))
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# LOG_FORMAT=json: one JSON object per line, secrets removed (console/operations/logs.py).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "console.operations.logs.JsonFormatter"},
    },
    # A webhook URL's token never reaches a log line (nor gunicorn's access
    # log: gunicorn.conf.py).
    "filters": {"webhook_tokens": {"()": "console.operations.logs.WebhookTokenFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["webhook_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
if LOG_FORMAT == "json":
    # runserver's request lines too, instead of Django's own plain format.
    LOGGING["loggers"] = {
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False}
    }
