"""Generated input through nginx on the running stack (hypothesis): thousands of query strings,
channel lists, Last-Event-ID headers, es-meta values and session cookies an anonymous client
could send to /events/. Whatever arrives, the answer is never a 5xx and never takes more than 5 s.

nginx allows one address 20 new streams a second (nginx/limits.conf); a request it turns away
with 429 is sent again a moment later, so that every generated input reaches the app."""

from __future__ import annotations

import http.client
import time
import uuid
from urllib.parse import quote, urlencode

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

EXAMPLES = 2000
TIMEOUT_S = 5.0

declared = st.sampled_from(["dashboard", "private", "ops", "probe-fuzz", f"probe-{uuid.uuid4()}"])
name_like = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"], include_characters="_.-!%:,"),
    max_size=80,
)
anything = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)
numbers = st.integers(min_value=-5, max_value=10**20).map(str)
last_ids = st.one_of(
    st.builds(lambda c, n: f"{c}:{n}", st.one_of(declared, name_like), numbers),
    st.lists(st.builds(lambda c, n: f"{c}:{n}", declared, numbers), max_size=12).map(",".join),
    st.just("error"),
    anything,
)
tokens = st.one_of(
    anything,
    st.builds(
        lambda claims, key: jwt.encode(claims, key, algorithm="HS256"),
        st.fixed_dictionaries(
            {},
            optional={
                "exp": st.integers(min_value=0, max_value=2**40),
                "channels": st.one_of(
                    st.lists(st.one_of(declared, name_like), max_size=12), anything
                ),
                "user": st.one_of(st.just("anonymous"), numbers, anything),
                "iss": st.just("es"),
            },
        ),
        st.text(min_size=1, max_size=40),
    ),
)
pairs = st.lists(
    st.one_of(
        st.tuples(st.just("channel"), st.one_of(declared, name_like, anything)),
        st.tuples(st.just("lastEventId"), last_ids),
        st.tuples(st.just("es-meta"), tokens),
        st.tuples(
            st.sampled_from(["link", "recover"]),
            st.one_of(st.just("next"), st.just("true"), anything),
        ),
        st.tuples(name_like, anything),
    ),
    max_size=14,
)
# Some queries as raw bytes: broken percent-escapes, stray separators.
raw_queries = st.text(
    alphabet=st.characters(
        codec="ascii", min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"
    ),
    max_size=300,
)
header_values = st.text(
    alphabet=st.characters(codec="latin-1", min_codepoint=0x20, exclude_characters="\x7f"),
    max_size=1200,
)


class Origin:
    """One keep-alive connection to the published origin, reopened after every stream."""

    def __init__(self, port: int):
        self.port, self.conn = port, None
        self.statuses: dict[int, int] = {}

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, float]:
        while True:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
            started = time.monotonic()
            try:
                self.conn.request("GET", path, headers=headers)
                response = self.conn.getresponse()
                status = response.status
                if status == 200:  # a stream: it never ends by itself
                    self.close()
                else:
                    response.read()
                    if response.will_close:
                        self.close()
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                self.close()
                raise AssertionError(
                    f"GET {path[:200]!r}: no answer within {TIMEOUT_S} s "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            elapsed = time.monotonic() - started
            if status != 429:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                return status, elapsed
            time.sleep(0.06)  # over nginx's per-address rate: the next slot comes within 50 ms

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture(scope="module")
def origin(stack):
    found = Origin(stack.http_port)
    yield found
    found.close()
    print(f"\nfuzzed /events/ through nginx: answers by status {sorted(found.statuses.items())}")


def on_the_wire(value: str) -> str:
    """A header value as bytes on the wire (UTF-8 where it is text), without the line breaks
    that would end the header."""
    return value.encode("utf-8").decode("latin-1").replace("\r", "").replace("\n", "")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    query=st.one_of(
        pairs.map(urlencode),
        # A declared channel first, so that the rest reaches the app's deeper checks.
        st.builds(lambda c, rest: urlencode([("channel", c), *rest]), declared, pairs),
        raw_queries,
    ),
    last_event_id=st.one_of(st.none(), last_ids, header_values),
    session=st.one_of(st.none(), header_values, st.text("abcdef0123456789", max_size=70)),
)
def test_events_never_answer_5xx_nor_hang(origin, stack, query, last_event_id, session):
    headers = {"Host": f"127.0.0.1:{stack.http_port}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = on_the_wire(last_event_id)
    if session is not None:
        headers["Cookie"] = on_the_wire(f"csrftoken=x; sessionid={session}")
    path = "/events/?" + quote(query, safe="&=%+!:,;/?@$'()*-._~[]")
    status, elapsed = origin.get(path, headers)
    assert status < 500, (
        f"GET {path[:300]!r} Last-Event-ID {last_event_id!r:.200} session {session!r:.80}: {status}"
    )
    assert elapsed < TIMEOUT_S, f"GET {path[:300]!r}: answered after {elapsed:.1f} s"
