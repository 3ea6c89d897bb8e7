"""The app under a real gunicorn, configured as its image runs it: the access log never holds a
stream link's credential, and the request's scheme follows X-Forwarded-Proto only from the
configured proxies."""

import time
import uuid

import jwt
import requests

from support.app import gunicorn


def settle(process, text: str, timeout: float = 5.0) -> str:
    """The log once it contains `text` (gunicorn writes asynchronously), or as it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = process.log_path.read_text()
        if text in log:
            return log
        time.sleep(0.1)
    return process.log_path.read_text()


def test_access_log_redacts_the_link_token(tmp_path):
    token = jwt.encode({"exp": int(time.time()) + 600, "user": "1"}, "k" * 40, algorithm="HS256")
    marker = uuid.uuid4().hex
    with gunicorn(tmp_path) as (site, process):
        response = requests.get(
            f"http://127.0.0.1:{site}/events/?channel=probe-{marker}&link=next&es-meta={token}",
            headers={"Host": "localhost"},
            timeout=5,
        )
        assert response.status_code == 403  # not signed by Pushpin: refused, and still logged
        log = settle(process, marker)
    line = next((line for line in log.splitlines() if marker in line), None)
    assert line is not None, f"the request is not in the access log:\n{log[-1500:]}"
    assert token not in log and token.split(".")[2] not in log, f"the token was logged: {line}"
    assert "es-meta=[redacted]" in line, line


def scheme_seen(site, process) -> str:
    """Which scheme Django believed, from its CSRF check of a form POST that claims https:
    for https it checks the Referer first, for http the cookie."""
    marker = uuid.uuid4().hex
    requests.post(
        f"http://127.0.0.1:{site}/accounts/login/?{marker}",
        headers={"X-Forwarded-Proto": "https", "Host": "localhost"},
        timeout=5,
    )
    log = settle(process, "Forbidden (")
    if "Forbidden (Referer checking failed - no Referer.)" in log:
        return "https"
    if "Forbidden (CSRF cookie not set.)" in log:
        return "http"
    raise AssertionError(f"no CSRF verdict in the log:\n{log[-1500:]}")


def test_forwarded_proto_is_believed_from_a_configured_proxy(tmp_path):
    with gunicorn(tmp_path, GUNICORN_FORWARDED_ALLOW_IPS="127.0.0.1") as (site, process):
        assert scheme_seen(site, process) == "https"


def test_forwarded_proto_is_ignored_from_any_other_peer(tmp_path):
    # The default trusts loopback only; here the proxy is elsewhere, this client is not it.
    with gunicorn(tmp_path, GUNICORN_FORWARDED_ALLOW_IPS="10.9.8.7") as (site, process):
        assert scheme_seen(site, process) == "http"
