"""The ops dashboard, built with the product itself: a staff user's browser, through nginx, sees
the open-stream count rise as clients connect, without a reload; nobody else gets in."""

import re
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.browser import chromium
from support.sse import SSEStream

pytestmark = pytest.mark.slow

OPS_PATH = "/dashboards/ops/opsdashboard/"
CLIENTS = 5
STREAMS_STAT = '[sse-swap$="componentstreams"] h2'


def create_user(stack, username: str, staff: bool) -> str:
    password = uuid.uuid4().hex
    code = (
        "from django.contrib.auth.models import User\n"
        f"u, _ = User.objects.get_or_create(username={username!r})\n"
        f"u.is_staff = {staff}\n"
        f"u.set_password({password!r})\n"
        "u.save()\n"
    )
    result = stack.manage("shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return password


def login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302, f"login as {username}: {response.status_code}"
    return session


def test_anonymous_and_non_staff_users_get_no_access(monitored):
    stack = monitored.stack
    base = f"http://127.0.0.1:{stack.http_port}"
    anonymous = requests.get(f"{base}{OPS_PATH}", timeout=10, allow_redirects=False)
    assert anonymous.status_code == 302, f"anonymous: expected a redirect, got {anonymous}"
    assert anonymous.headers["Location"].startswith("/accounts/login/"), anonymous.headers
    assert "Open streams" not in anonymous.text
    member = login(base, "ops-member", create_user(stack, "ops-member", staff=False))
    response = member.get(f"{base}{OPS_PATH}", timeout=10, allow_redirects=False)
    assert response.status_code == 403, f"a non-staff user: expected 403, got {response}"
    for cookie in ({}, {"Cookie": f"sessionid={member.cookies['sessionid']}"}):
        stream = SSEStream("127.0.0.1", stack.http_port, "/events/?channel=ops", headers=cookie)
        assert stream.status == 403, f"the ops channel with {cookie or 'no session'}: {stream}"


def shown_streams(browser) -> int | None:
    # One script call: htmx swaps the element out between a find and a read.
    text = browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        STREAMS_STAT,
    )
    text = text.strip().replace(",", "")
    return int(text) if text.isdigit() else None


def test_the_stream_count_rises_live_for_a_staff_user(monitored):
    stack = monitored.stack
    base = f"http://127.0.0.1:{stack.http_port}"
    password = create_user(stack, "ops-staff", staff=True)
    clients = []
    with chromium() as browser:
        browser.get(f"{base}/accounts/login/?next={OPS_PATH}")
        browser.find_element(By.NAME, "username").send_keys("ops-staff")
        browser.find_element(By.NAME, "password").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
        # The login page's own URL holds OPS_PATH in ?next=, so compare the path itself.
        WebDriverWait(browser, 15).until(
            lambda d: (
                urlsplit(d.current_url).path == OPS_PATH
                and d.execute_script("return document.readyState") == "complete"
            )
        )
        page_id = browser.execute_script("return window.performance.timeOrigin")
        # The first update arrives with the ticker's next tick, once the page's streams count.
        WebDriverWait(browser, 30).until(
            lambda d: shown_streams(d) is not None, message="the page never showed a number"
        )
        time.sleep(12)  # one Pushpin stats report later, the page's own streams are in
        before = shown_streams(browser)
        channel = f"probe-ops-{uuid.uuid4().hex[:6]}"
        try:
            for _ in range(CLIENTS):
                clients.append(
                    SSEStream("127.0.0.1", stack.http_port, f"/events/?channel={channel}")
                )
                clients[-1].wait_open()
            started = time.monotonic()
            WebDriverWait(browser, 40).until(
                lambda d: (shown_streams(d) or 0) >= before + CLIENTS,
                message=f"the page never showed {before} + {CLIENTS} streams",
            )
            print(
                f"ops page: {before} -> {shown_streams(browser)} streams, "
                f"{time.monotonic() - started:.1f} s after {CLIENTS} clients connected"
            )
        finally:
            for client in clients:
                client.close()
        assert browser.execute_script("return window.performance.timeOrigin") == page_id, (
            "the page reloaded"
        )
        browser.save_screenshot(str(stack.env_file.parent / "ops-dashboard.png"))
