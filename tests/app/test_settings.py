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
    ],
    ids=["no-secret-key", "empty-secret-key", "short-secret-key", "no-sig-key", "changeme-sig-key"],
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
