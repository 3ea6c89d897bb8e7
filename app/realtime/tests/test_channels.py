"""Channels: declared by the project or by apps, with an audience; nothing else streams."""

import pytest
from django.contrib.auth.models import AnonymousUser

from realtime import channels


def test_apps_and_the_project_declare_channels_and_the_project_wins(monkeypatch):
    monkeypatch.setattr(channels, "_declared", {"probe-*": "public", "private": "public"})
    channels.declare("orders", "staff")
    assert channels.audience("orders") == "staff"
    assert channels.audience("probe-42") == "public"
    # The project's settings say "authenticated": an app cannot open it to everyone.
    assert channels.audience("private") == "authenticated"
    assert channels.audience("nobody-declared-it") is None


def test_an_unknown_audience_is_refused():
    with pytest.raises(ValueError, match="audience"):
        channels.declare("x", "everyone")


@pytest.mark.parametrize("name", ["", "has space", "a" * 65, "-leading", "slash/inside"])
def test_malformed_names_are_refused(name):
    with pytest.raises(channels.ChannelError, match="malformed"):
        channels.validate(name)


def test_an_inactive_user_reads_nothing_but_public_channels():
    class Inactive:
        is_authenticated, is_active, is_staff = True, False, True

    assert not channels.can_read(Inactive(), "private")
    assert channels.can_read(AnonymousUser(), "probe-x")
