"""Production settings pass `manage.py check --deploy` with no warning, the
demo's defaults still work over plain http, and every response carries the
security headers (CSP, X-Frame-Options, Referrer-Policy…). Also the error
pages: the CSRF failure page and 400/403/404/500 in the console's look."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from console.errors import CSRF_MESSAGE

ROOT = Path(__file__).resolve().parent.parent
INLINE_STYLE = re.compile(r"<style\b|<[^>]*\sstyle\s*=", re.I)
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)


def production_env(tmp_path, **extra) -> dict:
    """What docs/deploy.md has production set, and nothing from this shell."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SKYVERN_", "CONSOLE_", "SECURE_", "SESSION_", "DJANGO_", "WEB_"))
        and key not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "STATIC_ROOT")
    }
    env.update(
        CONSOLE_HTTPS="1",
        SECRET_KEY="x7Gq" + "-production-secret-".join("abcdefghij") + "Zk9",
        ALLOWED_HOSTS="console.example.com",
        CONSOLE_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        CONSOLE_VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "srv" / "static"),
    )
    env.update(extra)
    return env


def manage(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


SHOW_SETTINGS = """
import json
from django.conf import settings as s
print(json.dumps({name: getattr(s, name, None) for name in [
    "DEBUG", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER", "X_FRAME_OPTIONS", "SECURE_REFERRER_POLICY",
    "SESSION_COOKIE_AGE", "SKYVERN_ALLOW_LOOPBACK", "SKYVERN_ALLOW_PRIVATE_HOSTS"]}))
"""


def settings_under(env) -> dict:
    result = manage("shell", "-c", SHOW_SETTINGS, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("proxy", [None, "X-Forwarded-Proto"])
def test_check_deploy_passes_with_no_warning_under_production_settings(tmp_path, proxy):
    extra = {"CONSOLE_PROXY_SSL_HEADER": proxy} if proxy else {}
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path, **extra)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_guides_environment_file_passes_check_deploy(tmp_path):
    """deploy/env.example with its two secrets filled in, as docs/deploy.md does."""
    env = production_env(tmp_path)
    for line in (ROOT / "deploy" / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            if name not in ("SECRET_KEY", "CONSOLE_ENCRYPTION_KEYS", "DATABASE_URL", "STATIC_ROOT"):
                env[name] = value
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert env["CONSOLE_PROXY_SSL_HEADER"] == "X-Forwarded-Proto"


@pytest.mark.parametrize(
    ("unset", "error"),
    [("SECRET_KEY", "console.E001"), ("CONSOLE_ENCRYPTION_KEYS", "console.E002")],
)
def test_check_deploy_fails_when_a_secret_falls_back_to_a_generated_file(tmp_path, unset, error):
    """Lose var/ and everyone is signed out, or every stored API key is unreadable."""
    env = production_env(tmp_path)
    del env[unset]
    result = manage("check", "--deploy", env=env)  # fails at Error level, Django's default
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"({error}) {unset} was read from a file generated under {tmp_path}" in output
    (other,) = {"console.E001", "console.E002"} - {error}
    assert other not in output


def test_generated_secrets_are_fine_for_the_demo(tmp_path):
    """Without --deploy (runserver, db_worker, the demo) the files are what they are for."""
    env = production_env(tmp_path)
    del env["SECRET_KEY"], env["CONSOLE_ENCRYPTION_KEYS"]
    result = manage("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "secret_key").exists() and (tmp_path / "encryption_key").exists()


def test_check_deploy_warns_when_static_files_go_to_the_demos_directory(tmp_path):
    env = production_env(tmp_path)
    del env["STATIC_ROOT"]
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "(console.W001) STATIC_ROOT is not set: collectstatic writes into the demo's " in (
        result.stderr
    )


def test_collectstatic_writes_where_static_root_says(tmp_path):
    env = production_env(tmp_path)
    result = manage("collectstatic", "--noinput", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "srv" / "static" / "console" / "console.css.gz").exists()
    assert not (tmp_path / "static").exists()


def test_production_settings_are_the_secure_ones(tmp_path):
    values = settings_under(production_env(tmp_path, CONSOLE_PROXY_SSL_HEADER="X-Forwarded-Proto"))
    assert values["DEBUG"] is False
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["SECURE_REFERRER_POLICY"] == "same-origin"
    assert values["SKYVERN_ALLOW_LOOPBACK"] is False
    assert values["SKYVERN_ALLOW_PRIVATE_HOSTS"] is False


def test_check_deploy_warns_without_the_https_switch(tmp_path):
    """The guard is real: the demo's defaults are not production settings."""
    env = production_env(tmp_path)
    del env["CONSOLE_HTTPS"]
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stdout + result.stderr


def test_the_demo_defaults_work_over_plain_http():
    """Without CONSOLE_HTTPS (the demo, the tests): no https redirect, no
    secure-only cookies, no HSTS, or http://127.0.0.1:8000 would not work."""
    assert django_settings.CONSOLE_HTTPS is False
    assert django_settings.SECURE_SSL_REDIRECT is False
    assert django_settings.SESSION_COOKIE_SECURE is False
    assert django_settings.CSRF_COOKIE_SECURE is False
    assert django_settings.SECURE_HSTS_SECONDS == 0


# --- headers on every response ------------------------------------------------------------


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def test_every_response_carries_the_security_headers(world, client_as):
    client = client_as(world.operator)
    for url in (reverse("login"), reverse("runs:run_list", args=["acme"]), "/no-such-page/"):
        response = client.get(url)
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"]


@pytest.mark.parametrize("allow_loopback", [False, True])
def test_the_csp_allows_nothing_inline_or_evaluated(world, client_as, settings, allow_loopback):
    settings.SKYVERN_ALLOW_LOOPBACK = allow_loopback
    response = client_as(world.operator).get(reverse("runs:run_list", args=["acme"]))
    header = response["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header
    assert "unsafe-hashes" not in header and "nonce-" not in header
    csp = csp_directives(header)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    loopback = ["http://127.0.0.1:*", "http://localhost:*"]
    assert csp["img-src"] == ["'self'", "https:", "data:", *(loopback if allow_loopback else [])]
    assert csp["media-src"] == ["'self'", "https:", *(loopback if allow_loopback else [])]


def test_the_csp_does_not_allow_plain_http_in_production(world, client_as, settings):
    settings.SKYVERN_ALLOW_LOOPBACK = False
    header = client_as(world.operator).get(reverse("login"))["Content-Security-Policy"]
    assert "http:" not in header.replace("https:", "")


# --- error pages ----------------------------------------------------------------------------


def assert_console_page(html: str):
    assert "Skyvern support" in html
    assert "console.css" in html
    assert not INLINE_STYLE.search(html), "inline style"
    assert not INLINE_SCRIPT.search(html), "inline script"


def test_a_stale_csrf_token_gets_a_clear_page_without_inline_styles(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.operator)
    run_id = world.add_run(status="failed")

    response = client.post(reverse("runs:run_retry", args=["acme", run_id]), {"seen_retries": "0"})

    assert response.status_code == 403
    html = response.content.decode()
    assert escape(CSRF_MESSAGE) in html
    assert "security token was missing or stale — reload the page and try again" in html
    assert_console_page(html)
    assert response["Content-Security-Policy"]


def test_the_csrf_failure_view_is_ours():
    assert django_settings.CSRF_FAILURE_VIEW == "console.errors.csrf_failure"


def test_403_and_404_pages_are_in_the_consoles_look(world, client_as):
    client = client_as(world.viewer)
    forbidden = client.get(reverse("teams:connection_list", args=["acme"]))
    assert forbidden.status_code == 403
    assert "You can't do that here" in forbidden.content.decode()
    assert "admin role" in forbidden.content.decode()
    assert_console_page(forbidden.content.decode())

    missing = client.get(reverse("runs:run_list", args=["globex"]))
    assert missing.status_code == 404
    assert "Not found" in missing.content.decode()
    assert_console_page(missing.content.decode())


@pytest.mark.parametrize("template", ["400.html", "403.html", "404.html", "500.html"])
def test_error_templates_render_without_any_context(template, db):
    """As Django's handlers render them when things are badly broken."""
    html = render_to_string(template)
    assert_console_page(html)
