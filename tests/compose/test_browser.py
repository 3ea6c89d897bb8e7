"""Headless Chromium on the dashboard served by nginx: SSE components update the page live."""

import time
import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.browser import chromium, requests_to, text_of

pytestmark = pytest.mark.slow

# Every text the live stat shows, recorded as it changes (updates can follow each other fast).
RECORD_STAT_TEXTS = """
const target = document.querySelector('[sse-swap$="componentload"]');
window.__statTexts = [target.innerText];
new MutationObserver(() => window.__statTexts.push(target.innerText))
  .observe(target, {childList: true, subtree: true, characterData: true});
"""


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def stat_text(browser, why: str) -> str:
    """The live stat's value once the page shows one (fails naming `why` after 15 s)."""
    return WebDriverWait(browser, 15).until(
        lambda d: text_of(d, '[sse-swap$="componentload"] h2'), message=why
    )


def open_dashboard(browser, stack) -> str:
    browser.get(f"http://127.0.0.1:{stack.http_port}/")
    return stat_text(browser, "the live stat shows no value")


def test_dashboard_shows_a_stat_served_through_nginx(browser, stack):
    open_dashboard(browser, stack)
    sources = [
        s.get_attribute("src") for s in browser.find_elements(By.CSS_SELECTOR, "script[src]")
    ]
    origin = f"http://127.0.0.1:{stack.http_port}/static/"
    assert sources and all(src.startswith(origin) for src in sources), (
        f"expected every script from the app's own static files ({origin}), got {sources}"
    )
    for element in browser.find_elements(By.CSS_SELECTOR, "[sse-connect]"):
        assert element.get_attribute("sse-connect").startswith("/events/?channel="), (
            "SSE components must connect to the same-origin /events/ path"
        )


def test_published_value_appears_without_a_reload(browser, stack):
    open_dashboard(browser, stack)
    browser.execute_script(RECORD_STAT_TEXTS)
    # The stream is open once the ticker's next update has arrived on the page.
    WebDriverWait(browser, 15).until(
        lambda d: len(d.execute_script("return window.__statTexts")) > 1
    )
    event = browser.find_element(By.CSS_SELECTOR, "[sse-swap$='componentload']").get_attribute(
        "sse-swap"
    )
    marker = f"published-{uuid.uuid4().hex[:8]}"
    page_id = browser.execute_script("return window.performance.timeOrigin")
    stack.publish(
        "dashboard", event, f'<div class="stat"><h2>{marker}</h2><p>from the test</p></div>'
    )
    started = time.monotonic()
    WebDriverWait(browser, 10).until(
        lambda d: any(marker in text for text in d.execute_script("return window.__statTexts")),
        message=f"the page never showed {marker} after the publish",
    )
    assert browser.execute_script("return window.performance.timeOrigin") == page_id, (
        "page reloaded"
    )
    print(f"value on the page {time.monotonic() - started:.3f} s after the publish returned")


def test_a_tab_that_missed_more_than_the_replay_limit_reloads_with_current_values(browser, stack):
    """The tab's stream is cut while more events are published than a resume may replay
    (REALTIME_REPLAY_MAX_EVENTS, 200): both Pushpin nodes are paused, take the publishes into
    their sockets' buffers, and are killed with them unread. When the tab resumes through a
    restarted node it gets stream-reset instead of hundreds of stale updates, reloads, and is
    live again."""
    open_dashboard(browser, stack)
    page_id = browser.execute_script("return window.performance.timeOrigin")
    browser.execute_script(RECORD_STAT_TEXTS)
    WebDriverWait(browser, 15).until(
        lambda d: len(d.execute_script("return window.__statTexts")) > 1,
        message="the page never got a live update before the test",
    )
    nodes = stack.containers("pushpin")
    for node in nodes:
        node.pause()
    try:
        result = stack.manage(
            "probe_publish",
            "dashboard",
            "--count",
            "260",
            "--rate",
            "200",
            "--event",
            "missed",
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-1500:]
    finally:
        for node in nodes:
            node.kill()
            node.start()
    try:
        WebDriverWait(browser, 60).until(
            lambda d: d.execute_script("return window.performance.timeOrigin") != page_id,
            message="the tab did not reload after missing more than the replay limit",
        )
        stat_text(browser, "the reloaded tab shows no value")
        browser.execute_script(RECORD_STAT_TEXTS)
        WebDriverWait(browser, 20).until(
            lambda d: len(d.execute_script("return window.__statTexts")) > 1,
            message="the reloaded tab gets no live updates",
        )
    finally:
        stack.wait_healthy()


def test_a_page_of_three_live_components_holds_one_stream_and_resumes_after_a_node_kill(
    browser, stack
):
    """The demo page shows three SSE components on one channel: one EventSource, not three.
    Both Pushpin nodes are killed and started again while an update is published: the page's
    one stream comes back with the last id and shows the update it missed, without a reload."""
    requests_to(browser, "/events/")  # forget earlier pages' requests
    open_dashboard(browser, stack)
    assert len(browser.find_elements(By.CSS_SELECTOR, "[sse-swap][data-sse-channel]")) == 3
    browser.execute_script(RECORD_STAT_TEXTS)
    WebDriverWait(browser, 15).until(
        lambda d: len(d.execute_script("return window.__statTexts")) > 1,
        message="the page never got a live update",
    )
    streams = [url for url, _ in requests_to(browser, "/events/")]
    assert [u.split("/events/", 1)[1] for u in streams] == ["?channel=dashboard"], (
        f"expected one stream for the page's three components, got {streams}"
    )
    page_id = browser.execute_script("return window.performance.timeOrigin")
    event = browser.find_element(By.CSS_SELECTOR, "[sse-swap$='componentload']").get_attribute(
        "sse-swap"
    )
    marker = f"missed-{uuid.uuid4().hex[:8]}"
    nodes = stack.containers("pushpin")
    try:
        for node in nodes:
            node.kill()
        # Stored while no node is there (the command says so and exits 1): the page must get it
        # from the app when its stream resumes.
        result = stack.manage(
            "publish", "dashboard", event, f'<div class="stat"><h2>{marker}</h2><p>x</p></div>'
        )
        assert "event stored" in result.stderr, result.stderr[-1000:]
        # The ticker must not overwrite the marker before the page sees it.
        ticker = stack.container("ticker")
        ticker.pause()
        for node in nodes:
            node.start()
        WebDriverWait(browser, 60).until(
            lambda d: any(marker in t for t in d.execute_script("return window.__statTexts")),
            message="the page's stream did not resume with the update it missed",
        )
    finally:
        for each in stack.containers("ticker"):
            if each.status == "paused":
                each.unpause()
        stack.wait_healthy()
    assert browser.execute_script("return window.performance.timeOrigin") == page_id, "reloaded"
    # After the HTTP errors while both nodes were down, sse-resume.js reopened the stream with
    # the last id the page had seen (the browser's own first retry sends it as a header, which
    # the DevTools log does not show).
    resumed = {
        u.split("lastEventId=", 1)[1]
        for u, _ in requests_to(browser, "/events/")
        if "lastEventId=" in u
    }
    assert len(resumed) == 1, f"expected reconnects resuming from one last id, got {resumed}"
