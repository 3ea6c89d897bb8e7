"""The Django app in this process, for tests that use its test client or its modules."""

import os
import sys

import django
import pytest

from support.app import APP, DEV_ENV

sys.path.insert(0, str(APP))

# Settings read the environment once, at setup; other tests (stacks) must not inherit it.
_saved = {name: os.environ.get(name) for name in DEV_ENV}
os.environ.update(DEV_ENV)
django.setup()
for name, value in _saved.items():
    if value is None:
        os.environ.pop(name)
    else:
        os.environ[name] = value


@pytest.fixture(scope="session")
def db():
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@pytest.fixture
def client(db):
    from django.test import Client

    return Client()
