"""realtime.settings.configure(): the declared settings from the environment, the secrets'
rules, and what it adds to a project's own settings."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from realtime import conf
from realtime.settings import configure

GOOD = {"DJANGO_SECRET_KEY": "s" * 40, "PUSHPIN_SIG_KEY": "p" * 20}


def configured(environ: dict, **project) -> dict:
    values = dict(project)
    configure(values, environ=environ)
    return values


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PUSHPIN_SIG_KEY": "p" * 20}, "DJANGO_SECRET_KEY is not set"),
        ({**GOOD, "DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY is too short"),
        ({"DJANGO_SECRET_KEY": "s" * 40}, "PUSHPIN_SIG_KEY is not set"),
        ({**GOOD, "PUSHPIN_SIG_KEY": "changeme"}, "'changeme'"),
        ({**GOOD, "PUSHPIN_SIG_KEY": "p" * 15}, "PUSHPIN_SIG_KEY is too short"),
        ({**GOOD, "PUSHPIN_SIG_KEY_FALLBACKS": "q" * 20 + ",x"}, "FALLBACKS is too short"),
        ({**GOOD, "DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe' is not a boolean"),
        ({**GOOD, "PUSHPIN_PUBLISH_TIMEOUT": "soon"}, "is not a number"),
        ({**GOOD, "REALTIME_STREAM_REFRESH_SECONDS": "5"}, "is below 10"),
        ({**GOOD, "REALTIME_STREAM_REFRESH_SECONDS": "3600"}, "is above 3599"),
        ({**GOOD, "PUSHPIN_PUBLISH_QUEUE_SIZE": "0"}, "is below 1"),
        ({**GOOD, "DJANGO_LOG_LEVEL": "LOUD"}, "use one of"),
        ({**GOOD, "REALTIME_REPLAY_MAX_AGE": "7200"}, "cannot exceed"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(environ, message):
    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(")):
        configured(environ)


def test_development_mode_starts_without_secrets():
    values = configured({"DJANGO_DEBUG": "1"})
    assert values["DEBUG"] is True and len(values["SECRET_KEY"]) >= 32


def test_every_declared_default_is_what_the_app_uses():
    """One default per setting: the declaration's, parsed, with nothing set."""
    values = configured(GOOD)
    for name in (
        "REALTIME_REPLAY_MAX_EVENTS",
        "REALTIME_STREAM_REFRESH_SECONDS",
        "TICKER_INTERVAL",
        "PUSHPIN_PUBLISH_QUEUE_BYTES",
        "PUSHPIN_CONTROL_URLS",
    ):
        assert values[name] == conf.BY_NAME[name].parse({}), name


def test_a_project_keeps_its_own_apps_and_middleware_in_order():
    values = configured(
        GOOD,
        INSTALLED_APPS=["django.contrib.auth", "myapp"],
        MIDDLEWARE=["django.middleware.security.SecurityMiddleware", "my.Middleware"],
    )
    assert values["INSTALLED_APPS"] == [
        "django.contrib.auth",
        "myapp",
        "django_eventstream",
        "dashboards",
        "realtime",
    ]
    assert values["MIDDLEWARE"] == [
        "realtime.health.HealthCheckMiddleware",
        "realtime.streams.StreamRequestMiddleware",
        "django_grip.GripMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "my.Middleware",
    ]


def test_forwarded_headers_are_never_trusted_by_django():
    values = configured(GOOD, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
    assert "SECURE_PROXY_SSL_HEADER" not in values


def test_every_accepted_pushpin_key_verifies_signatures():
    values = configured({**GOOD, "PUSHPIN_SIG_KEY_FALLBACKS": "o" * 20})
    assert [p["key"] for p in values["GRIP_PROXIES"]] == ["p" * 20, "o" * 20]
    assert all(p["verify_iss"] == "pushpin" for p in values["GRIP_PROXIES"])


def test_a_hosted_grip_service_replaces_the_nodes_key():
    values = configured(
        {
            "DJANGO_SECRET_KEY": "s" * 40,
            "GRIP_URL": "https://grip.example/realm/r?iss=r&key=base64:c2VjcmV0LWtleQ==",
        },
    )
    assert values["GRIP_PROXIES"] == [
        {"control_uri": "https://grip.example/realm/r/publish/", "key": b"secret-key"}
    ]


def test_the_declaration_prints_as_a_table():
    table = conf.markdown_table()
    for setting in conf.SETTINGS:
        assert f"| `{setting.name}` |" in table, setting.name
    assert "secret" in table
