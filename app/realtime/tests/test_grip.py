"""GRIP_URL: a hosted GRIP service's publish endpoint, its authentication and its signature."""

import time

import jwt
import pytest

from realtime import grip


def test_a_fanout_style_url_publishes_with_a_jwt_claiming_the_realm():
    service = grip.parse("https://api.fanout.io/realm/r1?iss=r1&key=base64:c2VjcmV0")
    assert service.publish_url == "https://api.fanout.io/realm/r1/publish/"
    assert service.name == "api.fanout.io:443"
    scheme, token = service.authorization().split()
    claims = jwt.decode(token, b"secret", algorithms=["HS256"])
    assert scheme == "Bearer" and claims["iss"] == "r1" and claims["exp"] > time.time()
    assert service.verifier() == {"control_uri": service.publish_url, "key": b"secret"}


def test_a_token_url_publishes_with_the_bearer_token_and_verifies_with_its_own_key():
    service = grip.parse("http://hosted:8080/?key=tok123&verify-iss=pushpin&verify-key=sigkey")
    assert service.publish_url == "http://hosted:8080/publish/"
    assert service.authorization() == "Bearer tok123"
    assert service.verifier() == {
        "control_uri": "http://hosted:8080/publish/",
        "key": "sigkey",
        "verify_iss": "pushpin",
    }


@pytest.mark.parametrize("url", ["", "ftp://x/", "hosted:8080", "https:///realm"])
def test_a_url_that_is_not_http_is_refused(url):
    with pytest.raises(grip.GripUrlError, match="GRIP_URL"):
        grip.parse(url)
