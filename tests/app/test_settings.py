"""Production mode (DJANGO_DEBUG unset) refuses to start without its secrets, saying which."""

import pytest

from support.app import manage

GOOD = {"DJANGO_SECRET_KEY": "x" * 50, "PUSHPIN_SIG_KEY": "y" * 32}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUSHPIN_SIG_KEY": "y" * 32}, "DJANGO_SECRET_KEY is not set"),
        ({**GOOD, "DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        ({**GOOD, "DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY is too short"),
        ({"DJANGO_SECRET_KEY": "x" * 50}, "PUSHPIN_SIG_KEY is not set"),
        ({**GOOD, "PUSHPIN_SIG_KEY": "changeme"}, "Pushpin's default 'changeme'"),
        ({**GOOD, "PUSHPIN_SIG_KEY": "y" * 15}, "PUSHPIN_SIG_KEY is too short"),
        (
            {**GOOD, "DJANGO_SECRET_KEY_FALLBACKS": "z" * 40 + ",short"},
            "DJANGO_SECRET_KEY_FALLBACKS is too short",
        ),
        ({**GOOD, "PUSHPIN_SIG_KEY_FALLBACKS": "changeme"}, "Pushpin's default 'changeme'"),
        (
            {**GOOD, "REALTIME_REPLAY_MAX_AGE": "7200"},
            "REALTIME_REPLAY_MAX_AGE cannot exceed REALTIME_EVENT_RETENTION_SECONDS",
        ),
    ],
    ids=[
        "no-secret-key",
        "empty-secret-key",
        "short-secret-key",
        "no-sig-key",
        "changeme-sig-key",
        "short-sig-key",
        "short-secret-fallback",
        "changeme-sig-fallback",
        "replay-longer-than-retention",
    ],
)
def test_production_refuses_to_start_without_secrets(env, message, tmp_path):
    result = manage("check", env={**env, "DJANGO_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0, f"expected a refusal, got exit 0: {result.stdout}"
    assert message in result.stderr, (
        f"expected {message!r} in the error, got:\n{result.stderr[-1500:]}"
    )


def test_production_starts_with_its_secrets(tmp_path):
    result = manage(
        "check", "--deploy", "--fail-level", "ERROR", env={**GOOD, "DJANGO_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr


def test_every_accepted_pushpin_key_verifies_signatures(tmp_path):
    """While a key rotates, a Grip-Sig signed with the new key or the previous one is accepted,
    and one signed with neither is not (production settings, in a fresh process)."""
    old, unknown = "o" * 24, "u" * 24
    env = {
        **GOOD,
        "PUSHPIN_SIG_KEY_FALLBACKS": old,
        "DJANGO_DATA_DIR": str(tmp_path),
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    assert manage("migrate", "-v0", env=env).returncode == 0
    script = f"""
import time, jwt
from django.test import Client
for key in ({GOOD["PUSHPIN_SIG_KEY"]!r}, {old!r}, {unknown!r}):
    sig = jwt.encode({{"iss": "pushpin", "exp": int(time.time()) + 60}}, key, algorithm="HS256")
    r = Client().get("/events/?channel=probe-rotation", HTTP_GRIP_SIG=sig)
    print("verdict", r.status_code, r.get("Grip-Hold", "-"))
"""
    result = manage("shell", "-c", script, env=env)
    assert result.returncode == 0, result.stderr
    verdicts = [line for line in result.stdout.splitlines() if line.startswith("verdict")]
    assert verdicts == ["verdict 200 stream", "verdict 200 stream", "verdict 403 -"], verdicts
