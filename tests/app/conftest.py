"""The Django app in this process, for tests that use its test client or its modules."""

import os
import sys

import pytest
from support.app import APP, DEV_ENV

os.environ.update(DEV_ENV)
sys.path.insert(0, str(APP))

import django

django.setup()


@pytest.fixture(scope="session")
def db():
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@pytest.fixture
def client(db):
    from django.test import Client

    return Client()
