"""Your own dashboards on the kit: the README's block creates a new project with
`django-admin startproject`, a dashboard with an SSE stat and a producer of its own, and
`make up APP_DIR=...` deploys it. Headless Chromium, through nginx, sees the stat change without
a reload, on one event stream."""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.browser import chromium, text_of
from support.own_project import DASHBOARD_PATH, run_block
from support.stack import new_stack

# The project's live stat (its orders count).
STAT = "[sse-swap$='componentorders'] h2"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_stack(docker_client, tmp_path_factory):
    directory = tmp_path_factory.mktemp("own")
    stack = new_stack(directory, "rtdash-own", "172.31.67.0/24")
    stack.extra_env["APP_DIR"] = str(directory / "mysite")
    # Its own image tags: the demo's rtdash/app:latest, which other tests run, stays the demo.
    stack.extra_env["KIT_IMAGE_TAG"] = "own"
    stack.destroy()
    try:
        started = time.monotonic()
        result = run_block(
            directory, {**stack.env, "PROJECT": stack.project, "ENV_FILE": str(stack.env_file)}
        )
        print(f"\nREADME block: project created and deployed in {time.monotonic() - started:.0f} s")
        assert f"==> Dashboard: http://127.0.0.1:{stack.http_port}/" in result.stdout
        yield stack
    finally:
        stack.destroy()


def test_the_new_projects_stat_changes_in_the_browser_without_a_reload(own_stack):
    with chromium() as browser:
        browser.get(f"http://127.0.0.1:{own_stack.http_port}{DASHBOARD_PATH}")
        WebDriverWait(browser, 20).until(lambda d: text_of(d, STAT) is not None)
        first = text_of(browser, STAT)
        page_id = browser.execute_script("return window.performance.timeOrigin")
        counted = WebDriverWait(browser, 20).until(
            lambda d: (text := text_of(d, STAT)) not in (None, "", first) and text,
            message=f"the producer's count never replaced {first!r} on the page",
        )
        assert counted.isdigit() and int(counted) > 0, f"the stat shows {counted!r}"
        assert browser.execute_script("return window.performance.timeOrigin") == page_id
        connect = browser.find_element(By.TAG_NAME, "body").get_attribute("sse-connect")
        assert connect == "/events/?channel=sales", f"the page streams from {connect!r}"


def test_the_ticker_runs_the_projects_producer(own_stack):
    logs = own_stack.container("ticker").logs().decode()
    assert "sales.producers.OrdersToday every 1 s" in logs, logs[-1500:]
