"""The package's own tests: Django set up with the package's settings alone (no project, no
Docker), a throwaway SQLite database."""

import tempfile

import django
import pytest
from django.conf import settings

from realtime.settings import configure

DATA_DIR = tempfile.mkdtemp(prefix="rtdash-realtime-tests-")
ENVIRON = {"DJANGO_DEBUG": "1", "DJANGO_DATA_DIR": DATA_DIR, "DJANGO_ALLOWED_HOSTS": "testserver"}


def pytest_configure(config):
    values = {
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "realtime_ops",
        ],
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        "ROOT_URLCONF": "realtime_test_urls",
        "TEMPLATES": [
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
        ],
        "REALTIME_CHANNELS": {"private": "authenticated"},
        "USE_TZ": True,
    }
    configure(values, environ=ENVIRON)
    settings.configure(**{k: v for k, v in values.items() if k.isupper()})
    django.setup()


@pytest.fixture(scope="session")
def db():
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@pytest.fixture
def client(db):
    from django.test import Client

    return Client()
