"""Which event channels exist and who may read them.

A channel (an fnmatch pattern) is declared with its audience, "public", "authenticated" or
"staff": by the project in ``settings.REALTIME_CHANNELS`` ({pattern: audience}), or by an app
calling ``declare(pattern, audience)`` from its AppConfig.ready(). The project's settings come
first, so they can narrow what an app declares. Streams of an undeclared channel are refused.
"""

import fnmatch
import re

from django.conf import settings
from django_eventstream.channelmanager import DefaultChannelManager

CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AUDIENCES = ("public", "authenticated", "staff")
# Channels one stream may read (django-eventstream's own limit is the same).
MAX_CHANNELS = 10


class ChannelError(ValueError):
    """A channel request that is malformed or names no declared channel (HTTP 400)."""


# Declared by installed apps (declare()); synthetic probes (monitoring, `make verify`,
# tests) publish and listen on their own channels.
_declared: dict[str, str] = {"probe-*": "public"}


def declare(pattern: str, audience: str) -> None:
    """Declare a channel pattern and who may read it (call from AppConfig.ready())."""
    if audience not in AUDIENCES:
        raise ValueError(f"audience of channel {pattern!r} must be one of {AUDIENCES}")
    _declared.setdefault(pattern, audience)


def declared() -> dict[str, str]:
    """Every declared pattern and its audience, the project's settings first."""
    return {
        **settings.REALTIME_CHANNELS,
        **{p: a for p, a in _declared.items() if p not in settings.REALTIME_CHANNELS},
    }


def audience(channel: str) -> str | None:
    """The audience of a declared channel (first matching pattern), or None if undeclared."""
    for pattern, who in declared().items():
        if fnmatch.fnmatchcase(channel, pattern):
            return who
    return None


def validate(channel: str) -> None:
    if not CHANNEL_NAME.match(channel):
        raise ChannelError(
            f"malformed channel name {channel[:80]!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    if audience(channel) is None:
        raise ChannelError(f"unknown channel {channel!r}")


def can_read(user, channel: str) -> bool:
    who = audience(channel)
    if who == "public":
        return True
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if who == "authenticated":
        return True
    return who == "staff" and user.is_staff


class ChannelManager(DefaultChannelManager):
    """django-eventstream channel manager: declared channels only, read rights by audience."""

    def get_channels_for_request(self, request, view_kwargs):
        channels = super().get_channels_for_request(request, view_kwargs)
        for channel in channels:
            validate(channel)
        return channels

    def can_read_channel(self, user, channel):
        return can_read(user, channel)

    def is_channel_reliable(self, channel):
        # Every declared channel is stored, so a reconnecting client gets what it missed.
        return True
