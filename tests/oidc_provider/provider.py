"""Start and stop the test identity provider (serve.py) from a test process.

Each start makes a fresh RS256 key, database and client secret, and waits
until the provider answers its discovery document."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = "idp password 1234"
STARTUP_SECONDS = 60


def rsa_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class IdentityProvider:
    """A running provider: where it is, and the console's client at it."""

    issuer: str
    client_id: str
    client_secret: str
    process: subprocess.Popen
    people: list[dict] = field(default_factory=list)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_provider(*, directory: Path, redirect_uris: list[str], people: list[dict]):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/o"
    client = {
        "client_id": "support-console",
        "client_secret": secrets.token_urlsafe(24),
        "redirect_uris": redirect_uris,
    }
    people = [{"password": PASSWORD, **person} for person in people]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
        "OIDC_TEST_DB": str(directory / "provider.sqlite3"),
        "OIDC_TEST_RSA_KEY": rsa_private_key_pem(),
        "OIDC_TEST_ISSUER": issuer,
        "OIDC_TEST_PORT": str(port),
        "OIDC_TEST_WORLD": json.dumps({"client": client, "people": people}),
    }
    log = (directory / "provider.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.oidc_provider.serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    provider = IdentityProvider(
        issuer=issuer,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        process=process,
        people=people,
    )
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                "the test identity provider stopped:\n" + (directory / "provider.log").read_text()
            )
        try:
            if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).ok:
                return provider
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError("the test identity provider did not start in time")
        time.sleep(0.1)


def sign_in_at_provider(authorize_url: str, username: str, password: str = PASSWORD) -> str:
    """What a browser does at the provider, with `requests`: follow the
    authorization request to the provider's sign-in form, fill it in, and
    return the URL the provider sends the browser back to (the callback)."""
    session = requests.Session()
    form = session.get(authorize_url, timeout=10)
    form.raise_for_status()
    answer = session.post(
        form.url,
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["idp_csrftoken"],
        },
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    authorize = session.get(
        urljoin(form.url, answer.headers["Location"]), allow_redirects=False, timeout=10
    )
    assert authorize.status_code == 302, authorize.text
    return authorize.headers["Location"]
