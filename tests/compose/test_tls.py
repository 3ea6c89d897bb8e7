"""The production origin: `make up KIT_TLS_DIR=...` serves TLS with HTTP/2 (many SSE streams on
one connection), HSTS and the usual security headers; plain HTTP only redirects. The
certificate is self-signed, made by the test."""

import asyncio
import contextlib
import datetime
import ipaddress
import os
import ssl
import uuid

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.stack import free_port, new_stack

pytestmark = pytest.mark.slow

NGINX_GID = 10003


def self_signed(directory) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    crt, pem = directory / "tls.crt", directory / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # As the README asks of operators: the key readable by nginx's group only.
    os.chown(directory, 0, NGINX_GID)
    os.chmod(directory, 0o750)  # noqa: S103 - nginx (group) must reach the key
    os.chown(pem, 0, NGINX_GID)
    os.chmod(pem, 0o640)
    return ssl.create_default_context(cafile=str(crt))


@pytest.fixture(scope="module")
def tls_stack(docker_client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    certs = tmp / "certs"
    certs.mkdir()
    trust = self_signed(certs)
    https_port = free_port()
    stack = new_stack(
        tmp, "rtdash-tls", "172.31.64.0/24", KIT_TLS_DIR=str(certs), KIT_HTTPS_PORT=str(https_port)
    )
    stack.destroy()
    try:
        up = stack.make("up")
        assert f"==> Dashboard: https://127.0.0.1:{https_port}/" in up.stdout, up.stdout[-500:]
        yield stack, f"https://127.0.0.1:{https_port}", trust
    finally:
        stack.destroy()


def test_https_with_http2_hsts_and_security_headers(tls_stack):
    _stack, base, ca = tls_stack
    with httpx.Client(http2=True, verify=ca) as client:
        response = client.get(f"{base}/", follow_redirects=True)
    assert response.status_code == 200
    assert response.http_version == "HTTP/2", f"expected HTTP/2, got {response.http_version}"
    headers = response.headers
    assert headers["strict-transport-security"].startswith("max-age=63072000"), headers
    expected = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "same-origin",
    }
    for name, value in expected.items():
        assert headers.get_list(name) == [value], (
            f"{name}: expected once {value!r}, got {headers.get_list(name)}"
        )
    assert "permissions-policy" in headers
    assert headers["server"] == "nginx", f"the server header names a version: {headers['server']}"


def test_plain_http_redirects_to_the_published_https_port(tls_stack):
    stack, base, ca = tls_stack
    page = "/accounts/login/?next=/"
    response = httpx.get(f"http://127.0.0.1:{stack.http_port}{page}", follow_redirects=False)
    assert response.status_code == 301
    # KIT_HTTPS_PORT, not 443: the redirect must land where the TLS origin is published.
    assert response.headers["location"] == f"{base}{page}", response.headers
    with httpx.Client(verify=ca) as client:
        landed = client.get(response.headers["location"], follow_redirects=True)
    assert landed.status_code == 200, f"following the redirect gave {landed.status_code}"


def test_many_event_streams_share_one_http2_connection(tls_stack):
    """More than the 6 streams HTTP/1.1 allows a page, all on one connection, all live."""
    stack, base, ca = tls_stack
    channel = f"probe-h2-{uuid.uuid4().hex[:6]}"
    count = 10

    # The async client, as a browser does it: one event loop opens the streams together. The sync
    # client's HTTP/2 connection is not safe across threads (httpcore 1.0 picks a stream id and
    # writes its HEADERS with no lock), so threads sharing it can lose a request.
    async def streams() -> list[str]:
        timeout = httpx.Timeout(30, read=30)
        async with httpx.AsyncClient(http2=True, verify=ca, timeout=timeout) as client:
            async with contextlib.AsyncExitStack() as held:
                lines = []
                for response in await asyncio.gather(
                    *(
                        held.enter_async_context(
                            client.stream("GET", f"{base}/events/?channel={channel}")
                        )
                        for _ in range(count)
                    )
                ):
                    assert response.http_version == "HTTP/2", response.http_version
                    lines.append(response.aiter_lines())
                await asyncio.gather(*(until(it, "event: stream-open") for it in lines))
                connections = await asyncio.to_thread(
                    stack.container("nginx").exec_run, "ss -tnH state established ( sport = :8443 )"
                )
                listing = connections.output.decode()
                assert len(listing.splitlines()) == 1, (
                    f"expected the {count} streams on one TCP connection:\n{listing}"
                )
                await asyncio.to_thread(stack.publish, channel, "update", "over-h2")
                return await asyncio.wait_for(
                    asyncio.gather(*(until(it, "data: ", "over-h2") for it in lines)), 10
                )

    received = asyncio.run(streams())
    assert len(received) == count, f"{len(received)} of {count} HTTP/2 streams got the event"


async def until(lines, prefix: str, containing: str = "") -> str:
    """The first line of a stream that starts with `prefix` and contains `containing`."""
    async for line in lines:
        if line.startswith(prefix) and containing in line:
            return line
    raise AssertionError(f"the stream ended before a line {prefix!r} with {containing!r}")
